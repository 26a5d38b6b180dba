/* clgrad: deep learning on any OpenCL device. The one header a program includes.
 * Headers: status.h (errors), device.h (devices), context.h, graph.h (graphs, parameters,
 * autograd, plans), ops.h (ops), nn.h (layers, initialisers, losses), optim.h (optimizers),
 * data.h (datasets, batches), checkpoint.h (safetensors checkpoints), transformer.h
 * (attention, blocks, GPT), rl.h (environments, value iteration, tabular Q-learning). */
#ifndef CLGRAD_CLGRAD_H
#define CLGRAD_CLGRAD_H

#include "status.h"
#include "device.h"
#include "context.h"
#include "graph.h"
#include "ops.h"
#include "nn.h"
#include "optim.h"
#include "data.h"
#include "checkpoint.h"
#include "transformer.h"
#include "rl.h"
#include "dqn.h"

#endif
