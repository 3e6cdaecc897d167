"""WasmEdge as files on a sandbox node: the WASI-NN plugin and ``libwasmedge.so.0`` (real ELF objects), and
how a dynamic loader would find their libraries inside a pod (see :mod:`.pluginfiles` and :mod:`.elfdeps`)."""
