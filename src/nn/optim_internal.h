/* How the compiler and runtime drive an optimizer: attach appends the update kernels (and the
 * gradient-norm kernels) to a plan; after_run advances the step counter. */
#ifndef CLG_NN_OPTIM_INTERNAL_H
#define CLG_NN_OPTIM_INTERNAL_H

#include "clgrad/optim.h"
#include "compile/lowering.h"
#include "runtime/plan.h"

clg_status clg_optimizer_attach(clg_optimizer *opt, clg_plan *plan, size_t n,
                                clg_param *const *params, const clg_operand *grads);
void clg_optimizer_detach(clg_optimizer *opt, clg_plan *plan);
/* Device bytes clg_optimizer_attach would allocate for these parameters (the state of those
 * that have none yet, the gradient norms when clipping), for the compiler's check against the
 * context's cap; first gets the first new state's name ("fc1.weight.exp_avg") or "". */
size_t clg_optimizer_attach_bytes(const clg_optimizer *opt, size_t n, clg_param *const *params,
                                  char *first, size_t first_size);
void clg_optimizer_after_run(clg_optimizer *opt, clg_plan *plan);
/* Learning rate at update number step (0-based) under the configured schedule. */
float clg_optimizer_lr_at(const clg_optimizer_config *cfg, int64_t step);

#endif
