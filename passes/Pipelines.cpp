//===- Pipelines.cpp - named pass pipelines and registration --------------===//

#include "kiln/Passes/Passes.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

void mlir::kiln::buildGraphPipeline(OpPassManager &pm,
                                    const GraphPipelineOptions &options) {
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createCSEPass());
  if (options.fuse) {
    // Activations first: the GLU and gated-MLP matchers look for named
    // activations; norms and MLPs are independent of each other.
    OpPassManager &fn = pm.nest<func::FuncOp>();
    fn.addPass(createFuseActivationsPass());
    fn.addPass(createFuseNormsPass());
    // Schemes that quantize activations quantize the one between a gated
    // MLP's projections too, which kiln.gated_mlp would hide.
    if (options.fuseMlp && options.quant != "fp8" && options.quant != "w4a4")
      fn.addPass(createFuseGatedMlpPass());
    fn.addPass(createFuseRopePass());
    fn.addPass(createFuseAttentionPass());
    fn.addPass(createFuseProjectionsPass());
    // Last: the chains the named fusions left (opt-in until the fusion
    // report can explain near-misses inside a fused chain).
    if (options.elementwise)
      fn.addPass(createFuseElementwisePass());
    pm.addPass(createCanonicalizerPass());
    pm.addPass(createCSEPass());
    // On the fused projections and MLPs, so that fused weights are
    // quantized together.
    if (!options.quant.empty()) {
      QuantizeWeightsPassOptions q;
      q.scheme = options.quant;
      q.group = options.quantGroup;
      q.zeroPoints = options.quantZeroPoints;
      q.weightScales = options.quantWeightScales;
      q.activations = options.quantActivations;
      if (options.quant == "w4a4")
        q.rotation = options.quantRotation;
      q.exclude.assign(options.quantExclude.begin(), options.quantExclude.end());
      pm.nest<func::FuncOp>().addPass(createQuantizeWeightsPass(q));
      pm.addPass(createCSEPass());
    }
    if (options.kvCache) {
      // On the fused attention: its keys and values are the presents.
      pm.nest<func::FuncOp>().addPass(createFormKvCachePass());
      pm.addPass(createCanonicalizerPass());
      if (options.kvLayout != "contiguous" || !options.kvDtype.empty()) {
        KvLayoutPassOptions kv;
        kv.layout = options.kvLayout;
        kv.blockSize = options.kvBlockSize;
        kv.dtype = options.kvDtype;
        kv.group = options.kvGroup;
        kv.scaleType = options.kvScaleType;
        pm.nest<func::FuncOp>().addPass(createKvLayoutPass(kv));
      }
      if (options.ragged) {
        pm.nest<func::FuncOp>().addPass(createRaggedBatchPass());
        pm.addPass(createCanonicalizerPass());
      }
    }
  }
  if (options.pruneWeights)
    pm.addPass(createPruneWeightsPass());
}

void mlir::kiln::registerKilnPassesAndPipelines() {
  registerKilnPasses();
  PassPipelineRegistration<GraphPipelineOptions>(
      "kiln-graph-pipeline",
      "The graph stage: fold shape computations, CSE, recognize and fuse "
      "norms, activations, gated MLPs, RoPE, attention and sibling "
      "projections, KV caches updated in place, prune unread weights",
      buildGraphPipeline);
}
