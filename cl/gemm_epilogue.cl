/* The epilogue of a GEMM for backends that cannot fuse it (CLBlast):
 * C(m, n) = act(C(m, n) + bias(m, n)) in place, bias NULL for none. Activation codes match
 * clg_gemm_act: 0 none, 1 relu, 2 tanh, 3 sigmoid, 4 gelu (tanh form). */

__kernel void gemm_epilogue(__global float *C, int c_off, int ldc, int c_bs, int M, int N,
                            __global const float *bias, int bias_off, int bias_rs, int bias_cs,
                            int has_bias, int act) {
    int n = get_global_id(0), m = get_global_id(1), b = get_global_id(2);
    if (n >= N || m >= M) return;
    int i = c_off + b * c_bs + m * ldc + n;
    float x = C[i];
    if (has_bias) x += bias[bias_off + m * bias_rs + n * bias_cs];
    switch (act) {
    case 1:
        x = x < 0.0f ? 0.0f : x;
        break;
    case 2:
        x = tanh(x);
        break;
    case 3:
        x = 1.0f / (1.0f + exp(-x));
        break;
    case 4:
        x = 0.5f * x * (1.0f + tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        break;
    default:
        break;
    }
    C[i] = x;
}
