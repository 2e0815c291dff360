from phylovi.trees.taxa import TaxonOrder
