/* DQN on CartPole-v1 with the tuned rl-zoo (Stable-Baselines3) settings: trains for --steps
 * environment steps with a progress bar, logs every episode, saves a checkpoint and a PNG of
 * the learning curve, then evaluates the greedy policy over 100 episodes.
 * Run: build/examples/dqn_cartpole [--seed N] [--steps N] [--double] [--log PATH]
 *      [--checkpoint PATH] [--png PATH] [--eval-episodes N] [--quiet] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <clgrad/clgrad.h>

#include "common/png_write.h"

#define AVERAGE_OVER 100

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what, clg_status st) {
    fprintf(stderr, "dqn_cartpole: %s: %s: %s\n", what, clg_status_name(st), clg_last_error());
    return 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: dqn_cartpole [--seed N] [--steps N] [--double] [--log PATH]\n"
            "                    [--checkpoint PATH] [--png PATH] [--eval-episodes N] [--quiet]\n"
            "defaults: seed 1, 50000 steps, dqn_cartpole.log, dqn_cartpole.safetensors,\n"
            "dqn_cartpole.png, 100 evaluation episodes\n");
}

/* The curve: every episode's return (light) and the moving average (dark) against the
 * environment step where the episode ended; y from 0 to 500. */
static void plot(uint8_t *rgb, int w, int h, const double *ends, const double *rets,
                 const double *avg, int n, double total) {
    memset(rgb, 255, (size_t)w * h * 3);
    const int m = 20;              /* margin */
    for (int y = 0; y <= 5; ++y) { /* grid every 100 of return */
        int py = h - m - (h - 2 * m) * y / 5;
        for (int x = m; x < w - m; ++x) {
            uint8_t *p = rgb + ((size_t)py * w + x) * 3;
            p[0] = p[1] = p[2] = y == 0 ? 0 : 220;
        }
    }
    for (int py = m; py <= h - m; ++py) {
        uint8_t *p = rgb + ((size_t)py * w + m) * 3;
        p[0] = p[1] = p[2] = 0;
    }
    for (int pass = 0; pass < 2; ++pass) {
        const double *v = pass ? avg : rets;
        int last_x = -1, last_y = -1;
        for (int i = 0; i < n; ++i) {
            int x = m + (int)((w - 2 * m) * (ends[i] / total));
            int y = h - m - (int)((h - 2 * m) * (fmin(v[i], 500) / 500.0));
            if (x < 0 || x >= w || y < 0 || y >= h) continue;
            int steps = last_x < 0 ? 1 : abs(x - last_x) + abs(y - last_y) + 1;
            for (int s = 0; s < steps; ++s) { /* a line from the previous point */
                int px = last_x < 0 ? x : last_x + (x - last_x) * s / steps;
                int py = last_y < 0 ? y : last_y + (y - last_y) * s / steps;
                uint8_t *p = rgb + ((size_t)py * w + px) * 3;
                if (pass) {
                    p[0] = 200, p[1] = 30, p[2] = 30;
                } else {
                    p[0] = 150, p[1] = 180, p[2] = 230;
                }
            }
            last_x = x, last_y = y;
        }
    }
}

int main(int argc, char **argv) {
    long long seed = 1, steps = 50000, eval_episodes = 100;
    bool dbl = false, quiet = false;
    const char *log_path = "dqn_cartpole.log", *ckpt_path = "dqn_cartpole.safetensors";
    const char *png_path = "dqn_cartpole.png";
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--double")) {
            dbl = true;
        } else if (!strcmp(a, "--quiet")) {
            quiet = true;
        } else if (v && !strcmp(a, "--seed")) {
            seed = strtoll(v, &end, 10), ++i;
        } else if (v && !strcmp(a, "--steps")) {
            steps = strtoll(v, &end, 10), ++i;
            if (steps < 1) end = NULL;
        } else if (v && !strcmp(a, "--eval-episodes")) {
            eval_episodes = strtoll(v, &end, 10), ++i;
            if (eval_episodes < 1) end = NULL;
        } else if (v && !strcmp(a, "--log")) {
            log_path = v, ++i;
            end = "";
        } else if (v && !strcmp(a, "--checkpoint")) {
            ckpt_path = v, ++i;
            end = "";
        } else if (v && !strcmp(a, "--png")) {
            png_path = v, ++i;
            end = "";
        } else {
            usage();
            return 2;
        }
        if (!strcmp(a, "--double") || !strcmp(a, "--quiet")) continue;
        if (!end || *end) {
            fprintf(stderr, "dqn_cartpole: bad value for %s\n", a);
            usage();
            return 2;
        }
    }

    clg_context *ctx;
    clg_status st = clg_context_create(NULL, &ctx);
    if (st != CLG_OK) return fail("opening the device", st);
    clg_dqn_config cfg = clg_dqn_defaults();
    cfg.total_steps = steps;
    cfg.seed = (uint64_t)seed;
    cfg.double_dqn = dbl;
    clg_dqn *agent;
    st = clg_dqn_new(ctx, "dqn", &cfg, CLG_CARTPOLE_OBSERVATIONS, CLG_CARTPOLE_ACTIONS, &agent);
    if (st != CLG_OK) return fail("building the agent", st);
    clg_cartpole *env;
    clg_cartpole_new((uint64_t)seed, &env);
    FILE *log = fopen(log_path, "w");
    if (!log) {
        fprintf(stderr, "dqn_cartpole: cannot write %s\n", log_path);
        return 1;
    }
    fprintf(log, "episode,step,return,average%d,epsilon,loss,seconds\n", AVERAGE_OVER);
    printf("DQN on CartPole-v1, seed %lld, %lld steps%s (device: %s)\n", seed, steps,
           dbl ? ", Double DQN" : "", clg_context_device(ctx)->name);

    size_t cap = 1024;
    double *ends = malloc(cap * sizeof *ends), *rets = malloc(cap * sizeof *rets);
    double *avg = malloc(cap * sizeof *avg);
    int episodes = 0;
    double ret = 0, t0 = now();
    float obs[4], next[4];
    clg_cartpole_reset(env, NULL, obs);
    for (long long t = 1; t <= steps; ++t) {
        int32_t a;
        clg_step_result r;
        st = clg_dqn_act(agent, obs, -1.0, &a);
        if (st == CLG_OK) st = clg_cartpole_step(env, a, next, &r);
        /* truncation is not termination: the state after it still has a value */
        if (st == CLG_OK) st = clg_dqn_observe(agent, obs, a, (float)r.reward, next, r.terminated);
        if (st != CLG_OK) return fail("training", st);
        ret += r.reward;
        memcpy(obs, next, sizeof obs);
        if (r.terminated || r.truncated) {
            if ((size_t)episodes == cap) {
                cap *= 2;
                ends = realloc(ends, cap * sizeof *ends);
                rets = realloc(rets, cap * sizeof *rets);
                avg = realloc(avg, cap * sizeof *avg);
                if (!ends || !rets || !avg) return fail("recording", CLG_ERR_OUT_OF_MEMORY);
            }
            ends[episodes] = (double)t;
            rets[episodes] = ret;
            double s = 0;
            int k0 = episodes + 1 > AVERAGE_OVER ? episodes + 1 - AVERAGE_OVER : 0;
            for (int k = k0; k <= episodes; ++k)
                s += rets[k];
            avg[episodes] = s / (episodes + 1 - k0);
            float loss = clg_dqn_updates(agent) ? clg_dqn_last_loss(agent) : NAN;
            fprintf(log, "%d,%lld,%.0f,%.2f,%.4f,%.6g,%.2f\n", episodes + 1, t, ret, avg[episodes],
                    clg_dqn_epsilon(agent), (double)loss, now() - t0);
            ++episodes;
            ret = 0;
            clg_cartpole_reset(env, NULL, obs);
        }
        if (!quiet && (t % 500 == 0 || t == steps)) {
            int width = 30, fill = (int)(width * t / steps);
            double el = now() - t0;
            fprintf(stderr,
                    "\r[%.*s%*s] %6lld/%lld  episodes %4d  avg%d %6.1f  eps %.3f  %5.0f steps/s",
                    fill, "##############################", width - fill, "", t, steps, episodes,
                    AVERAGE_OVER, episodes ? avg[episodes - 1] : 0.0, clg_dqn_epsilon(agent),
                    (double)t / (el > 0 ? el : 1));
        }
    }
    double train_s = now() - t0;
    if (!quiet) fprintf(stderr, "\n");
    fclose(log);
    printf("trained %lld steps, %d episodes, %lld updates in %.1f s (last %d episodes' mean "
           "return %.1f)\n",
           steps, episodes, (long long)clg_dqn_updates(agent), train_s, AVERAGE_OVER,
           episodes ? avg[episodes - 1] : 0.0);

    char sv[32], ss[32];
    snprintf(sv, sizeof sv, "%lld", seed);
    snprintf(ss, sizeof ss, "%lld", steps);
    const clg_checkpoint_entry meta[2] = {{"seed", sv}, {"steps", ss}};
    st = clg_checkpoint_save_meta(ctx, ckpt_path, clg_dqn_optimizer(agent), meta, 2);
    if (st != CLG_OK) return fail("saving the checkpoint", st);
    printf("checkpoint: %s\n", ckpt_path);

    enum { W = 800, H = 400 };
    uint8_t *rgb = malloc((size_t)W * H * 3);
    char err[512];
    if (rgb && episodes > 0) {
        plot(rgb, W, H, ends, rets, avg, episodes, (double)steps);
        if (png_write_rgb(png_path, rgb, W, H, err, sizeof err))
            printf("learning curve: %s\n", png_path);
        else
            fprintf(stderr, "dqn_cartpole: %s\n", err);
    }
    free(rgb);

    double mean, sd;
    st = clg_dqn_evaluate_cartpole(agent, (int)eval_episodes, (uint64_t)seed + 1000003, &mean, &sd);
    if (st != CLG_OK) return fail("evaluating", st);
    printf("evaluation return std %.1f\n", sd);
    printf("evaluation mean return %.1f over %lld episodes after %lld steps\n", mean, eval_episodes,
           steps);
    free(ends);
    free(rets);
    free(avg);
    clg_cartpole_free(env);
    clg_dqn_free(agent);
    clg_context_free(ctx);
    return 0;
}
