/* Environment steps per second of CartPole-v1 batches: the device batch (actions drawn on the
 * device; and acting through a [256, 256] Q-network with epsilon-greedy in the same plan)
 * against a loop over host environments. tools/bench-envs.py runs this next to Gymnasium's
 * SyncVectorEnv. Usage: bench-envs [N ...] (default 1 64 1024); CLGRAD_DEVICE picks the device. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <clgrad/clgrad.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what, clg_status st) {
    fprintf(stderr, "bench-envs: %s: %s: %s\n", what, clg_status_name(st), clg_last_error());
    return 1;
}

#define MIN_SECONDS 1.0

/* Runs of plan per second (batches of runs between waits, after a warm-up). */
static double plan_rate(clg_plan *p, clg_tensor *eps) {
    float e = 0.1f;
    if (eps) clg_plan_write(p, eps, &e, sizeof e);
    for (int k = 0; k < 5; ++k)
        clg_plan_run(p);
    clg_plan_finish(p);
    long runs = 0;
    int chunk = 16;
    double t0 = now(), t;
    do {
        for (int k = 0; k < chunk; ++k)
            clg_plan_run(p);
        clg_plan_finish(p);
        runs += chunk;
        t = now() - t0;
        if (chunk < 4096) chunk *= 2;
    } while (t < MIN_SECONDS);
    return (double)runs / t;
}

int main(int argc, char **argv) {
    int64_t ns[16] = {1, 64, 1024};
    int count = 3;
    if (argc > 1) {
        count = 0;
        for (int i = 1; i < argc && count < 16; ++i)
            ns[count++] = atoll(argv[i]);
    }
    clg_context *ctx;
    clg_status st = clg_context_create(NULL, &ctx);
    if (st != CLG_OK) return fail("opening the device", st);
    printf("device: %s (fp64 %s)\n", clg_context_device(ctx)->name,
           clg_context_device(ctx)->fp64 ? "yes" : "no");
    printf("%-6s %16s %16s %16s\n", "N", "device step/s", "device act+step/s", "host loop/s");
    for (int c = 0; c < count; ++c) {
        int64_t n = ns[c];
        char name[64];
        snprintf(name, sizeof name, "bench%d", c);
        clg_cartpole_vec *v;
        if ((st = clg_cartpole_vec_new(ctx, name, n, 1, &v)) != CLG_OK) return fail("vec", st);
        /* the environments alone: random actions drawn on the device */
        clg_graph *g = clg_graph_new(ctx);
        clg_tensor *u = clg_rand_uniform(g, 1, &n, 0.0f, 1.0f, 9);
        clg_tensor *a = clg_cast(g, clg_gt(g, u, clg_scalar(g, 0.5f)), CLG_I32);
        clg_cartpole_vec_add_step(v, g, a);
        clg_plan *p;
        if ((st = clg_graph_compile(g, NULL, &p)) != CLG_OK) return fail("step plan", st);
        double dev = plan_rate(p, NULL) * (double)n;
        /* observe -> Q-network -> epsilon-greedy -> step, one plan */
        clg_qnet net;
        snprintf(name, sizeof name, "benchq%d", c);
        if ((st = clg_qnet_init(ctx, &net, name, 4, (int64_t[]){256, 256}, 2, 2, 3)) != CLG_OK)
            return fail("qnet", st);
        clg_graph *g2 = clg_graph_new(ctx);
        clg_tensor *eps = clg_input(g2, "eps", CLG_F32, 1, (int64_t[]){1});
        clg_tensor *q = clg_qnet_forward(g2, &net, clg_param_tensor(g2, clg_cartpole_vec_obs(v)));
        clg_cartpole_vec_add_step(v, g2, clg_epsilon_greedy(g2, q, eps, 5));
        clg_plan *p2;
        if ((st = clg_graph_compile(g2, NULL, &p2)) != CLG_OK) return fail("act plan", st);
        double act = plan_rate(p2, eps) * (double)n;
        /* host: n environments stepped in a loop with random actions, reset when done */
        clg_cartpole **envs = malloc((size_t)n * sizeof *envs);
        for (int64_t i = 0; i < n; ++i) {
            clg_cartpole_new((uint64_t)i, &envs[i]);
            clg_cartpole_reset(envs[i], NULL, NULL);
        }
        clg_rng rng;
        clg_rng_seed(&rng, 1);
        long steps = 0;
        double t0 = now(), t;
        do {
            for (int rep = 0; rep < 64; ++rep)
                for (int64_t i = 0; i < n; ++i) {
                    float obs[4];
                    clg_step_result r;
                    clg_cartpole_step(envs[i], (int)(clg_rng_next(&rng) >> 63), obs, &r);
                    if (r.terminated || r.truncated) clg_cartpole_reset(envs[i], NULL, obs);
                    ++steps;
                }
            t = now() - t0;
        } while (t < MIN_SECONDS);
        double host = (double)steps / t;
        printf("%-6lld %16.0f %16.0f %16.0f\n", (long long)n, dev, act, host);
        for (int64_t i = 0; i < n; ++i)
            clg_cartpole_free(envs[i]);
        free(envs);
        clg_graph_free(g);
        clg_graph_free(g2);
        clg_cartpole_vec_free(v);
    }
    clg_context_free(ctx);
    return 0;
}
