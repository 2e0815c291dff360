"""Pure data: taxa, splits and clades as bitsets, topologies and their array form."""

from phylovi.trees.batch import TopologyBatch, TreeArrays
from phylovi.trees.taxa import TaxonOrder
from phylovi.trees.topology import RootedTopology, Topology, Tree

__all__ = ["TaxonOrder", "Topology", "RootedTopology", "Tree", "TopologyBatch", "TreeArrays"]
