"""The OpenFlow 1.3 model (flows, groups, meters, operations, the pipeline) and its codecs; no I/O."""
