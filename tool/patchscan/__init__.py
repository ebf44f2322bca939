"""patchscan: classify folders of histology patches and skin-lesion images on the CPU."""

__version__ = "0.1.0"
