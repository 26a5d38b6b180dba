/* Tabular Q-learning on FrozenLake (Gymnasium's 4x4 and 8x8 lakes) or clgrad's grid world:
 * train, print the Q table and the greedy policy as arrows on the map, and measure the success
 * rate over 10,000 episodes next to the optimum value iteration computes from the model.
 * Host only. Run: build/examples/q_learning [--env frozenlake4|frozenlake8|grid] [--slippery
 * 0|1] [--episodes N] [--seed N] [--gamma G] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <clgrad/clgrad.h>

#define EVAL_EPISODES 10000

static void usage(void) {
    fprintf(stderr, "usage: q_learning [--env frozenlake4|frozenlake8|grid] [--slippery 0|1]\n"
                    "                  [--episodes N] [--seed N] [--gamma G]\n"
                    "defaults: frozenlake4, slippery, 20000 episodes (frozenlake8: 200000, grid: "
                    "10000), seed 1, gamma 0.99\n");
}

static int fail(const char *what, clg_status st) {
    fprintf(stderr, "q_learning: %s: %s: %s\n", what, clg_status_name(st), clg_last_error());
    return 1;
}

/* The map with an arrow per non-terminal cell, and the terminal cells' letters. */
static void print_policy(const clg_mdp *m, const int32_t *policy, const char *indent) {
    static const char arrows[] = "<v>^"; /* left, down, right, up */
    for (int r = 0; r < clg_mdp_rows(m); ++r) {
        printf("%s", indent);
        for (int c = 0; c < clg_mdp_cols(m); ++c) {
            int32_t s = r * clg_mdp_cols(m) + c;
            printf(" %c", clg_mdp_is_terminal(m, s) ? clg_mdp_cell(m, s) : arrows[policy[s]]);
        }
        printf("\n");
    }
}

static int parse_int(const char *s, long long lo, long long *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*s == 0 || *end != 0 || v < lo) return 0;
    *out = v;
    return 1;
}

int main(int argc, char **argv) {
    const char *env_name = "frozenlake4";
    long long slippery = 1, episodes = -1, seed = 1;
    double gamma = 0.99;
    for (int i = 1; i < argc; i += 2) { /* each flag takes a value */
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return 0;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = v != NULL;
        if (strcmp(argv[i], "--env") == 0 && v) {
            env_name = v;
        } else if (strcmp(argv[i], "--slippery") == 0 && v) {
            ok = parse_int(v, 0, &slippery) && slippery <= 1;
        } else if (strcmp(argv[i], "--episodes") == 0 && v) {
            ok = parse_int(v, 0, &episodes);
        } else if (strcmp(argv[i], "--seed") == 0 && v) {
            ok = parse_int(v, 0, &seed);
        } else if (strcmp(argv[i], "--gamma") == 0 && v) {
            char *end;
            gamma = strtod(v, &end);
            ok = *end == 0 && gamma >= 0 && gamma <= 1;
        } else {
            ok = 0;
        }
        if (!ok) {
            usage();
            return 2;
        }
    }

    clg_mdp *m = NULL;
    clg_status st;
    const char *title;
    if (strcmp(env_name, "frozenlake4") == 0 || strcmp(env_name, "frozenlake8") == 0) {
        int size = env_name[10] - '0';
        st = clg_frozenlake_new(size, slippery != 0, &m);
        title = slippery ? "slippery" : "not slippery";
        if (episodes < 0) episodes = size == 4 ? 20000 : 200000;
    } else if (strcmp(env_name, "grid") == 0) {
        st = clg_gridworld_new(&m);
        title = "deterministic; step -1, goal +10, pit -10";
        if (episodes < 0) episodes = 10000;
    } else {
        usage();
        return 2;
    }
    if (st != CLG_OK) return fail("environment", st);
    const int S = clg_mdp_states(m), A = clg_mdp_actions(m);
    printf("q_learning: %s (%s), %d states, %d actions, %d steps per episode\n", env_name, title, S,
           A, clg_mdp_max_steps(m));

    double *q = malloc((size_t)S * A * sizeof *q);
    int32_t *learned = malloc((size_t)S * sizeof *learned);
    int32_t *best = malloc((size_t)S * sizeof *best);
    double *v = malloc((size_t)S * sizeof *v);
    if (!q || !learned || !best || !v) {
        fprintf(stderr, "q_learning: out of memory\n");
        return 1;
    }
    clg_qlearn_options opts = clg_qlearn_defaults(episodes);
    opts.gamma = gamma;
    opts.seed = (uint64_t)seed;
    clg_qlearn_stats stats;
    clock_t t0 = clock();
    if ((st = clg_qlearn(m, &opts, q, learned, &stats)) != CLG_OK) return fail("clg_qlearn", st);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("trained: %lld episodes (epsilon %g -> %g over %.0f episodes, alpha %g / (1 + "
           "visits / %g) >= %g, gamma %g, seed %lld), %lld steps in %.2f s; %.2f%% of the "
           "training episodes reached the goal\n",
           episodes, opts.epsilon.start, opts.epsilon.end, opts.epsilon.span, opts.alpha.start,
           opts.alpha.span, opts.alpha.end, gamma, seed, (long long)stats.steps, secs,
           episodes ? 100.0 * (double)stats.successes / (double)episodes : 0.0);

    printf("\nQ table (rows: non-terminal states; columns: left down right up)\n");
    for (int32_t s = 0; s < S; ++s) {
        if (clg_mdp_is_terminal(m, s)) continue;
        printf("  %3d (%d,%d) %c ", (int)s, (int)s / clg_mdp_cols(m), (int)s % clg_mdp_cols(m),
               clg_mdp_cell(m, s));
        for (int a = 0; a < A; ++a)
            printf(" %9.5f", q[(size_t)s * A + a]);
        printf("\n");
    }

    if ((st = clg_value_iteration(m, gamma, 1e-12, v, best)) != CLG_OK)
        return fail("clg_value_iteration", st);
    int differ = 0;
    for (int32_t s = 0; s < S; ++s)
        differ += !clg_mdp_is_terminal(m, s) && learned[s] != best[s];
    printf("\npolicy learned by Q-learning:\n");
    print_policy(m, learned, "  ");
    printf("policy from value iteration (gamma %g, V(start) = %.5f):\n", gamma,
           v[clg_mdp_start(m)]);
    print_policy(m, best, "  ");
    printf("they differ in %d state%s (where actions tie, or a state the policy rarely "
           "visits)\n",
           differ, differ == 1 ? "" : "s");

    double rate, optimum, bound;
    if ((st = clg_policy_rollouts(m, learned, EVAL_EPISODES, (uint64_t)seed + 1000, &rate)) !=
            CLG_OK ||
        (st = clg_policy_success(m, best, 0, &optimum)) != CLG_OK ||
        (st = clg_optimal_success(m, 0, &bound)) != CLG_OK)
        return fail("evaluation", st);
    double learned_exact;
    if ((st = clg_policy_success(m, learned, 0, &learned_exact)) != CLG_OK)
        return fail("evaluation", st);
    printf("\nsuccess within %d steps: learned policy %.2f%% over %d episodes (exactly %.2f%%); "
           "value iteration's policy exactly %.2f%%; no policy, even one that counts the steps "
           "left, passes %.2f%%\n",
           clg_mdp_max_steps(m), 100 * rate, EVAL_EPISODES, 100 * learned_exact, 100 * optimum,
           100 * bound);
    printf("success rate %.2f%% (optimum %.2f%%)\n", 100 * rate, 100 * optimum);
    free(q);
    free(learned);
    free(best);
    free(v);
    clg_mdp_free(m);
    return 0;
}
