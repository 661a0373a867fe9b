"""The renderer: the warp that animates the photo (torch, exported into the graph) and that graph's render step
on its own (ONNX Runtime), for review sheets and geometry checks. Nothing here is imported eagerly, so serving
never loads torch."""
