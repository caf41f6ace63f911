"""Detection training: a small anchor-free (CenterNet-style) detector on the classification
backbones, trained on COCO-format data and exported with its box decoding in the graph; the
contract's postprocessing (:func:`visionyard.contract.postprocess.detect`: score threshold,
per-class NMS, the letterbox undone) is the one NMS, in training evaluation and in serving."""
