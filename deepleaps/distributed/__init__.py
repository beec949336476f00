"""Training on several processes with torch.distributed (docs/distributed.md).

``ranks``: which process this is and the collectives the rest use; ``ddp``: the model
wrapped for data parallelism and the samplers that split the data; ``lockstep``: every
change rank 0 commits applied by every rank at the same safe point; ``launch``:
``deepleaps run --nproc-per-node N`` through torch.distributed's launcher.
"""
