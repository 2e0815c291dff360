"""Reading and writing files: alignments, tree files, atomic output."""

from phylovi.io.alignment import Alignment, read_alignment
from phylovi.io.trees import TreeSample, read_tree, read_trees, write_newick

__all__ = ["Alignment", "read_alignment", "TreeSample", "read_tree", "read_trees", "write_newick"]
