"""Training the embedded shapes-world model. The library never imports this package."""

#: the model families (promptedit.families.FAMILIES) whose architecture the recipe (train/shapes.py) builds
ARCHITECTURES = ("sd", "sdxl", "flux")
