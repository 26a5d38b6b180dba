/* Op attributes (graph/attrs.h): the one printer gives the exact text of each kind from its
 * schema, lists and runs of values included, truncates safely, and every kind has a schema
 * whose fields lie inside its struct. Host only: no graph, no device. */
#include <stdio.h>
#include <string.h>

#include "graph/attrs.h"
#include "harness.h"

static const char *describe(clg_attrs a) {
    static char buf[512];
    return clg_attrs_describe(&a, buf, sizeof buf);
}

START_TEST(printer_exact_strings) {
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_NONE}), "");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_POOL,
                                          .pool = {{2, 2}, {2, 2}, {0, 0}}}),
                     "pool2d{kernel=2x2 stride=2x2 pad=0x0}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_POOL,
                                          .pool = {{3, 2}, {1, 2}, {1, 0}}}),
                     "pool2d{kernel=3x2 stride=1x2 pad=1x0}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_REDUCE,
                                          .reduce = {.axes_mask = 1u << 1, .scale = 0.5f}}),
                     "reduce{axes=[1] scale=0.5}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_REDUCE,
                                          .reduce = {.axes_mask = 0x5, .scale = 1.0f}}),
                     "reduce{axes=[0, 2] scale=1}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_SCALARS, .scalars = {0.125f, -2}}),
                     "scalars{a=0.125 b=-2}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_SCALAR, .scalar = {3}}),
                     "scalar{value=3}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_RANDOM,
                                          .random = {0, 1, 18446744073709551615ull}}),
                     "random{a=0 b=1 seed=18446744073709551615}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_MATMUL, .matmul = {false, true}}),
                     "matmul{trans_a=false trans_b=true}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_AXIS, .axis = {2}}), "axis{axis=2}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_PERMUTE,
                                          .permute = {.ndim = 3, .perm = {2, 0, 1}}}),
                     "permute{perm=[2, 0, 1]}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_SLICE, .slice = {1, 4, 3}}),
                     "slice{axis=1 start=4 step=3}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_EMBED,
                                          .embed = {.ndim = 2,
                                                    .start = {1, 0},
                                                    .step = {1, 2},
                                                    .value = -1.5f}}),
                     "embed{start=[1, 0] step=[1, 2] value=-1.5}");
    clg_conv_geo geo = {.kh = 3,
                        .kw = 3,
                        .stride_h = 1,
                        .stride_w = 2,
                        .pad_top = 1,
                        .pad_left = 0,
                        .dilation_h = 1,
                        .dilation_w = 1,
                        .groups = 1,
                        .n = 2,
                        .c = 3,
                        .h = 8,
                        .w = 7,
                        .oh = 8,
                        .ow = 3};
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_CONV,
                                          .conv = {geo, CLG_CONV_LAYOUT_FOLDED, 0.0f}}),
                     "conv{kernel=3x3 stride=1x2 pad=1x0 dilation=1x1 groups=1 image=2x3x8x7 "
                     "out=8x3 layout=folded pad_value=0}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_LOSS, .loss = {0.25f}}),
                     "loss{scale=0.25}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_ROWS,
                                          .rows = {0.125f, 1e-5f, CLG_ROW_MASK_CAUSAL, 64, 0,
                                                    false, true}}),
                     "rows{scale=0.125 eps=1e-05 mask=causal rows=64 diagonal=0 weight=false "
                     "bias=true}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_ATTENTION,
                                          .attention = {0.5f, true, false}}),
                     "attention{scale=0.5 causal=true mask=false}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_SAMPLE, .sample = {40, 0.8f, 7}}),
                     "sample{k=40 temperature=0.8 seed=7}");
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_SCAN, .scan = {1, true, false}}),
                     "scan{axis=1 exclusive=true reverse=false}");
    ck_assert_str_eq(
        describe((clg_attrs){.kind = CLG_ATTRS_RECURRENT,
                             .recurrent = {.cell = CLG_CELL_GRU, .reverse = true, .T = 64,
                                           .B = 12, .H = 256, .bias = true, .lengths = true,
                                           .dout = true}}),
        "recurrent{cell=gru reverse=true T=64 B=12 H=256 bias=true h0=false c0=false "
        "lengths=true dout=true dh_n=false dc_n=false dh0=false}");
    int x = 0;
    ck_assert_str_eq(describe((clg_attrs){.kind = CLG_ATTRS_OPAQUE, .opaque = {&x}}), "opaque{}");
}
END_TEST

START_TEST(printer_truncates_and_refuses_bad_kinds) {
    clg_attrs a = {.kind = CLG_ATTRS_POOL, .pool = {{2, 2}, {2, 2}, {0, 0}}};
    char small[12];
    memset(small, 'x', sizeof small);
    clg_attrs_describe(&a, small, sizeof small);
    ck_assert_str_eq(small, "pool2d{kern");
    char one[1] = {'x'};
    clg_attrs_describe(&a, one, sizeof one);
    ck_assert_int_eq(one[0], '\0');
    char buf[64], want[64];
    clg_attrs bad = {.kind = CLG_ATTRS_COUNT};
    snprintf(want, sizeof want, "attrs?%d", (int)CLG_ATTRS_COUNT);
    ck_assert_str_eq(clg_attrs_describe(&bad, buf, sizeof buf), want);
    ck_assert_str_eq(clg_attrs_describe(NULL, buf, sizeof buf), "");
    ck_assert_ptr_null(clg_attrs_schema(CLG_ATTRS_COUNT));
}
END_TEST

/* The schema table is the printer's only knowledge: one entry per kind, named, its fields
 * inside the union. */
START_TEST(every_kind_has_a_schema) {
    for (int k = 0; k < CLG_ATTRS_COUNT; ++k) {
        const clg_attr_schema *s = clg_attrs_schema((clg_attrs_kind)k);
        ck_assert_ptr_nonnull(s);
        ck_assert_ptr_nonnull(s->name);
        ck_assert_msg(k == CLG_ATTRS_NONE || s->name[0], "kind %d has no name", k);
        size_t payload = sizeof(clg_attrs) - offsetof(clg_attrs, scalar);
        for (int i = 0; i < s->n_fields; ++i) {
            const clg_attr_field *f = &s->fields[i];
            ck_assert_msg(f->name && f->name[0], "kind %d field %d has no name", k, i);
            ck_assert_msg(f->offset < payload, "%s.%s lies outside the union", s->name, f->name);
            ck_assert_int_lt(f->type, CLG_ATTR_TYPE_COUNT);
        }
    }
}
END_TEST

int main(void) {
    Suite *s = suite_create("attrs");
    TCase *tc = tcase_create("printer");
    tcase_add_test(tc, printer_exact_strings);
    tcase_add_test(tc, printer_truncates_and_refuses_bad_kinds);
    tcase_add_test(tc, every_kind_has_a_schema);
    suite_add_tcase(s, tc);
    return clg_test_run(s);
}
