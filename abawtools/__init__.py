"""abawtools: Unix-style tools for frame-level expression recognition on Aff-Wild2 (ABAW EXPR)."""

__version__ = "0.3.0"

#: The 8 ABAW expression classes, in the order of the annotation header and of every logits column.
CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
NUM_CLASSES = len(CLASSES)
