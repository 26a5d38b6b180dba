/* The grid MDPs: Gymnasium's FrozenLake (gymnasium/envs/toy_text/frozen_lake.py: its maps,
 * move rule, slip probabilities and outcome order) and clgrad's deterministic grid world, both
 * built from rows of map letters into the explicit outcome lists of rl_internal.h. */
#include <string.h>

#include "core/error.h"
#include "rl/rl_internal.h"

/* A map too large to index with int32 pairs is refused long before memory runs out. */
#define MAX_CELLS (1 << 20)

static const char *const lake4[] = {"SFFF", "FHFH", "FFFH", "HFFG"};
static const char *const lake8[] = {"SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF",
                                    "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG"};
static const char *const world5[] = {"S.#..", ".###.", "..P..", "#.#.#", "P...G"};

/* Rows of equal length from `letters`, exactly one 'S'; *cols set. */
static clg_status check_map(const char *fn, const char *const *rows, int nrows, const char *letters,
                            int max_steps, int *cols) {
    if (!rows || nrows < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: the map has no rows", fn);
    if (max_steps < 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: max_steps %d is not positive", fn,
                        max_steps);
    size_t width = rows[0] ? strlen(rows[0]) : 0;
    if (width < 1 || (size_t)nrows * width > MAX_CELLS)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: a %d-row map of width %zu (1 to %d cells)",
                        fn, nrows, width, MAX_CELLS);
    int starts = 0;
    for (int r = 0; r < nrows; ++r) {
        if (!rows[r] || strlen(rows[r]) != width)
            return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: row %d is %s, not %zu cells like row 0",
                            fn, r, rows[r] ? "another width" : "NULL", width);
        for (size_t c = 0; c < width; ++c) {
            if (!strchr(letters, rows[r][c]) || rows[r][c] == 0)
                return clg_fail(CLG_ERR_INVALID_ARGUMENT,
                                "%s: row %d column %zu is '%c', not one of \"%s\"", fn, r, c,
                                rows[r][c], letters);
            starts += rows[r][c] == 'S';
        }
    }
    if (starts != 1)
        return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: the map has %d start cells 'S', not one", fn,
                        starts);
    *cols = (int)width;
    return CLG_OK;
}

/* The cell a move leads to, edges clamped (Gymnasium's inc()). */
static void move(int a, int nrows, int ncols, int *r, int *c) {
    if (a == CLG_GRID_LEFT && *c > 0) --*c;
    if (a == CLG_GRID_DOWN && *r < nrows - 1) ++*r;
    if (a == CLG_GRID_RIGHT && *c < ncols - 1) ++*c;
    if (a == CLG_GRID_UP && *r > 0) --*r;
}

static clg_mdp *new_grid(const char *const *rows, int nrows, int ncols, int per_pair, int max_steps,
                         const char *terminals, const char *goals) {
    clg_mdp *m = clg_mdp_alloc(nrows, ncols, CLG_GRID_ACTION_COUNT, per_pair);
    if (!m) return NULL;
    m->max_steps = max_steps;
    for (int s = 0; s < m->states; ++s) {
        char ch = rows[s / ncols][s % ncols];
        m->cells[s] = ch;
        m->terminal[s] = strchr(terminals, ch) != NULL;
        m->goal[s] = strchr(goals, ch) != NULL;
        if (ch == 'S') m->start = s;
    }
    return m;
}

clg_status clg_frozenlake_from_map(const char *const *rows, int nrows, bool slippery, int max_steps,
                                   clg_mdp **out) {
    static const char fn[] = "clg_frozenlake_from_map";
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    int ncols;
    clg_status st = check_map(fn, rows, nrows, "SFHG", max_steps, &ncols);
    if (st != CLG_OK) return st;
    clg_mdp *m = new_grid(rows, nrows, ncols, 3, max_steps, "HG", "G");
    if (!m) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    /* Gymnasium's success_rate 1/3 and fail_rate (1 - 1/3) / 2, which rounds to
     * 0.33333333333333337: kept so that draws split [0, 1) at the same points */
    const double success = 1.0 / 3.0, fail = (1.0 - success) / 2.0;
    for (int32_t s = 0; s < m->states; ++s) {
        for (int a = 0; a < CLG_GRID_ACTION_COUNT; ++a) {
            if (m->terminal[s]) {
                clg_mdp_add(m, 1.0, s, 0.0, true);
            } else {
                for (int k = slippery ? -1 : 0; k <= (slippery ? 1 : 0); ++k) {
                    int b = (a + k + CLG_GRID_ACTION_COUNT) % CLG_GRID_ACTION_COUNT;
                    int r = s / ncols, c = s % ncols;
                    move(b, nrows, ncols, &r, &c);
                    int32_t next = r * ncols + c;
                    double p = !slippery ? 1.0 : b == a ? success : fail;
                    clg_mdp_add(m, p, next, m->goal[next] ? 1.0 : 0.0, m->terminal[next]);
                }
            }
            clg_mdp_close_pair(m, s, a);
        }
    }
    *out = m;
    return CLG_OK;
}

clg_status clg_frozenlake_new(int size, bool slippery, clg_mdp **out) {
    if (out) *out = NULL;
    if (size == 4) return clg_frozenlake_from_map(lake4, 4, slippery, 100, out);
    if (size == 8) return clg_frozenlake_from_map(lake8, 8, slippery, 200, out);
    return clg_fail(CLG_ERR_INVALID_ARGUMENT, "clg_frozenlake_new: size %d is not 4 or 8", size);
}

clg_status clg_gridworld_from_map(const char *const *rows, int nrows,
                                  const clg_gridworld_options *opts, clg_mdp **out) {
    static const char fn[] = "clg_gridworld_from_map";
    if (!out) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    *out = NULL;
    if (!opts) return clg_fail(CLG_ERR_INVALID_ARGUMENT, "%s: opts is NULL", fn);
    int ncols;
    clg_status st = check_map(fn, rows, nrows, "S.#PG", opts->max_steps, &ncols);
    if (st != CLG_OK) return st;
    /* walls are terminal only so that planners skip them: no move enters one */
    clg_mdp *m = new_grid(rows, nrows, ncols, 1, opts->max_steps, "#PG", "G");
    if (!m) return clg_fail(CLG_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (int32_t s = 0; s < m->states; ++s) {
        for (int a = 0; a < CLG_GRID_ACTION_COUNT; ++a) {
            if (m->terminal[s]) {
                clg_mdp_add(m, 1.0, s, 0.0, true);
            } else {
                int r = s / ncols, c = s % ncols;
                move(a, nrows, ncols, &r, &c);
                int32_t next = r * ncols + c;
                if (m->cells[next] == '#') next = s;
                char ch = m->cells[next];
                double reward = ch == 'G'   ? opts->goal_reward
                                : ch == 'P' ? opts->pit_reward
                                            : opts->step_reward;
                clg_mdp_add(m, 1.0, next, reward, m->terminal[next]);
            }
            clg_mdp_close_pair(m, s, a);
        }
    }
    *out = m;
    return CLG_OK;
}

clg_status clg_gridworld_new(clg_mdp **out) {
    const clg_gridworld_options opts = {
        .step_reward = -1.0, .goal_reward = 10.0, .pit_reward = -10.0, .max_steps = 100};
    return clg_gridworld_from_map(world5, 5, &opts, out);
}
