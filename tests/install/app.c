/* An outside program built against an installed clgrad with
 *   cc app.c $(pkg-config --cflags --libs clgrad)
 * It computes softmax([1, 2, 3]) on the default device and checks it. */
#include <math.h>
#include <stdio.h>

#include <clgrad/clgrad.h>

int main(void) {
    clg_context *ctx = NULL;
    if (clg_context_create(NULL, &ctx) != CLG_OK) {
        fprintf(stderr, "app: %s\n", clg_last_error());
        return 1;
    }
    clg_graph *g = clg_graph_new(ctx);
    const int64_t n = 3;
    clg_tensor *x = clg_input(g, "x", CLG_F32, 1, &n);
    clg_tensor *y = clg_softmax(g, x, 0);
    clg_plan *plan = NULL;
    const float in[3] = {1.0f, 2.0f, 3.0f};
    float out[3];
    if (clg_graph_output(g, y) != CLG_OK || clg_graph_compile(g, NULL, &plan) != CLG_OK ||
        clg_plan_write(plan, x, in, sizeof in) != CLG_OK || clg_plan_run(plan) != CLG_OK ||
        clg_plan_read(plan, y, out, sizeof out) != CLG_OK) {
        fprintf(stderr, "app: %s\n", clg_last_error());
        clg_context_free(ctx);
        return 1;
    }
    double z = exp(1.0) + exp(2.0) + exp(3.0);
    int bad = 0;
    for (int i = 0; i < 3; ++i) bad |= fabs(out[i] - exp(i + 1.0) / z) > 1e-6;
    printf("app: softmax = %.6f %.6f %.6f on %s\n", out[0], out[1], out[2],
           clg_context_device(ctx)->name);
    clg_context_free(ctx);
    return bad;
}
