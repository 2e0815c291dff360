"""Tree files (Newick, NEXUS, MrBayes ``.t``/``.trprobs``, BEAST ``.trees``) through DendroPy.

Every tree is read into phylovi's own types: an unrooted :class:`Topology`
over one :class:`TaxonOrder` and its branch lengths in edge order. A rooted
tree (binary root) is unrooted by merging the two root edges into one edge
whose length is their sum; a basal trifurcation is taken as it is. Any other
node with other than two children makes the tree unusable.

Every failure is a :class:`phylovi.errors.PhyloviError` whose message is one
line naming the file and, where known, the line or the tree (1-based).
"""

from __future__ import annotations

import io
import math
import numbers
import os
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import dendropy
import numpy as np
from dendropy.dataio.newickreader import NewickReader
from dendropy.dataio.nexusprocessing import NexusTokenizer
from dendropy.dataio.nexusyielder import NexusTreeDataYielder
from dendropy.dataio.tokenizer import Tokenizer

from phylovi.errors import ConfigError, TaxonMismatchError, TreeFileError, require_path
from phylovi.io import atomic
from phylovi.io.files import extension, read_bytes
from phylovi.trees.bitset import bits_of, normalize_split
from phylovi.trees.taxa import TaxonOrder
from phylovi.trees.topology import RootedTopology, Topology, Tree

FORMATS = ("newick", "nexus")
_EXTENSIONS = {
    ".nwk": "newick", ".newick": "newick", ".tre": "newick", ".tree": "newick",
    ".nex": "nexus", ".nexus": "nexus", ".t": "nexus", ".trprobs": "nexus", ".trees": "nexus",
}
# Underscores stay underscores and case matters, as in alignments; weights come
# from MrBayes's "[&W p]"; other "[&...]" comments (BEAST) are not interpreted,
# which is faster and leaves fewer ways to fail.
_DENDROPY_OPTIONS = dict(
    preserve_underscores=True,
    case_sensitive_taxon_labels=True,
    store_tree_weights=True,
    extract_comment_metadata=False,
)
_STRING = "<newick string>"
# What may come before a tree's first '(': a byte-order mark, blanks and comments ([&R]).
_PREAMBLE = re.compile(r"(?:\ufeff|\s|\[[^\]]*\])*")


@dataclass(frozen=True)
class TreeSample:
    """The trees of one file, after burn-in.

    Attributes:
        taxa: the taxon order every tree's bitsets refer to.
        trees: the trees, in file order.
        weights: ``[n_trees]`` float64: 1.0 per sampled tree, or the tree's
            ``[&W w]`` weight (the topology's probability in a MrBayes ``.trprobs``).
        path: the file read, or None for a Newick string.
        root_splits: per tree, the split of the edge the file's binary root
            sits on, or None where the root has three children (unrooted).
        weighted: the trees carry ``[&W]`` weights: a list of topologies with their
            probabilities, not a chain's sample.
        first_number: the file position (from 1) of ``trees[0]``: 1 plus the trees
            burn-in dropped.
    """

    taxa: TaxonOrder
    trees: tuple[Tree, ...]
    weights: np.ndarray
    path: str | None
    root_splits: tuple[int | None, ...] = ()
    weighted: bool = False
    first_number: int = 1

    def rooted_topologies(self) -> "list[RootedTopology]":
        """The trees as rooted topologies, rooted where the file rooted them.

        Raises:
            TreeFileError: a tree has a basal trifurcation, so no root.
        """
        rooted = []
        for number, (tree, split) in enumerate(zip(self.trees, self.root_splits), 1):
            if split is None:
                raise TreeFileError(f"tree {number} is unrooted (its root has three children); "
                                    "a rooted analysis needs rooted trees", path=self.path or _STRING)
            rooted.append(tree.topology.rooted_at(split))
        return rooted

    def __len__(self) -> int:
        return len(self.trees)


def read_trees(path: str | os.PathLike, taxa: TaxonOrder | None = None,
               format: str | None = None, burnin: float = 0.0,
               lengths: bool = True, taxa_source: str = "the expected taxa") -> TreeSample:
    """Read every tree of a Newick or NEXUS file (or of a Newick string, see
    :func:`read_tree`).

    Args:
        path: the tree file, or Newick text.
        taxa: the taxon order (or names) to use; every tree must hold exactly
            these taxa. If None: the NEXUS TAXA/translate order if there is one, else the
            order of first appearance in the first tree.
        format: "newick" or "nexus"; None detects it from the content
            (``#NEXUS`` or ``(``), then from the extension.
        burnin: fraction in [0, 1) of the trees to drop from the start
            (:func:`burnin_count`: ``floor(burnin * n_trees)`` trees).
        lengths: False for callers that use only the topologies: the branch
            lengths are then neither checked nor kept (all NaN), so that, say, a
            neighbour-joining tree's negative lengths are no error.
        taxa_source: where ``taxa`` come from, for errors (e.g. "the alignment").

    A tip label that is not one of ``taxa`` but is one once spaces and underscores count
    as the same (Newick writes a space as '_') is read as that taxon.

    Raises:
        TreeFileError: unreadable, malformed, empty, non-binary trees, bad
            branch lengths or weights.
        TaxonMismatchError: a tree's taxa differ from ``taxa``, from the NEXUS
            TAXA/translate taxa, or else from the first tree's.
        ConfigError: bad ``format`` or ``burnin``.
    """
    if is_newick_string(path):
        check_burnin(burnin, _STRING)
        path, text = None, path.lstrip("\ufeff")
    else:
        require_path(path, "the tree file")
        path = os.fspath(path)
        check_burnin(burnin, path)
        text = read_text(path)
        if not text.strip():
            raise TreeFileError("the tree file is empty", path=path)
    return _parse(text, path, _choose_format(text, path or _STRING, format), taxa, burnin,
                  lengths, taxa_source)


def read_tree(path_or_newick: str | os.PathLike, taxa: TaxonOrder | None = None,
              format: str | None = None, lengths: bool = True,
              taxa_source: str = "the expected taxa") -> Tree:
    """Read the one tree of a file, or of a Newick string such as ``"((a,b),c,d);"``.

    A string is taken as Newick when it is not an existing path and starts with '('.
    ``lengths`` and ``taxa_source`` as in :func:`read_trees`.

    Raises:
        TreeFileError: as :func:`read_trees`, or when there is not exactly one tree.
    """
    sample = read_trees(path_or_newick, taxa, format, lengths=lengths, taxa_source=taxa_source)
    if len(sample.trees) != 1:
        raise TreeFileError(f"expected exactly one tree, found {len(sample.trees)}",
                            path=sample.path or _STRING)
    return sample.trees[0]


def is_newick_string(value) -> bool:
    """True for a string that is Newick text rather than a path: it names no file and starts
    with '(' (after any comments such as ``[&R]``)."""
    return (isinstance(value, str) and _PREAMBLE.sub("", value, count=1).startswith("(")
            and not os.path.exists(value))


def read_rooted_topology(path_or_newick: str | os.PathLike, taxa: TaxonOrder | None = None,
                         format: str | None = None) -> RootedTopology:
    """The one tree of a file or Newick string, as a rooted topology (its root must be binary;
    its branch lengths are not read).

    Raises:
        TreeFileError: as :func:`read_tree`, or when the root has three children.
    """
    if is_newick_string(path_or_newick):
        sample = _parse(path_or_newick, None, _choose_format(path_or_newick, _STRING, format),
                        taxa, 0.0, lengths=False)
    else:
        sample = read_trees(path_or_newick, taxa, format, lengths=False)
    if len(sample.trees) != 1:
        raise TreeFileError(f"expected exactly one tree, found {len(sample.trees)}",
                            path=sample.path or _STRING)
    return sample.rooted_topologies()[0]


def write_newick(path: str | os.PathLike, trees: Iterable[Tree | Topology]) -> None:
    """Write one Newick string per line, atomically.

    A tree whose lengths are all NaN (read from a topology-only file) is
    written as a topology, since other programs cannot read ``:nan``.
    """
    require_path(path, "the tree file")
    if isinstance(trees, (str, Tree, Topology)):
        raise ConfigError(f"write_newick takes a list of trees, got one {type(trees).__name__}")
    lines = [_newick_of(tree) for tree in trees]
    try:
        with atomic.write(path) as handle:
            handle.writelines(line + "\n" for line in lines)
    except OSError as error:
        raise TreeFileError(f"cannot write the tree file: {error.strerror or error}",
                            path=path) from error


def _newick_of(tree: Tree | Topology) -> str:
    if isinstance(tree, Topology):
        return tree.to_newick()
    if isinstance(tree, Tree):
        if np.isnan(tree.branch_lengths).all():
            return tree.topology.to_newick()
        return tree.to_newick()
    raise ConfigError(f"write_newick takes Tree or Topology objects, got {type(tree).__name__}")


def burnin_count(burnin: float, n_trees: int) -> int:
    """How many of ``n_trees`` a burn-in fraction drops: ``floor(burnin * n_trees)``, with
    the product's rounding error forgiven (0.57 * 100 is 56.99999999999999)."""
    return math.floor(burnin * n_trees + 1e-9)


def check_burnin(burnin, path: str) -> None:
    """A ConfigError naming ``path`` unless ``burnin`` is a fraction in [0, 1)."""
    if (isinstance(burnin, bool) or not isinstance(burnin, numbers.Real)
            or not 0 <= burnin < 1):
        raise ConfigError(f"burn-in must be a fraction in [0, 1), got {burnin!r}", path=path)


def read_text(path: str) -> str:
    """The text of a tree file (UTF-8, a byte-order mark dropped), or a TreeFileError."""
    try:
        return read_bytes(path).decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")
    except FileNotFoundError:
        raise TreeFileError("no such tree file", path=path) from None
    except UnicodeDecodeError as error:
        raise TreeFileError(f"not UTF-8 text (bad byte at offset {error.start})",
                            path=path) from None
    except OSError as error:
        raise TreeFileError(f"cannot read the tree file: {error.strerror or error}",
                            path=path) from None


def _choose_format(text: str, path: str, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"unknown tree format {format!r}, expected one of {FORMATS}",
                              path=path)
        return format
    start = text.lstrip("\ufeff \t\r\n")
    if start[:6].upper() == "#NEXUS":
        return "nexus"
    if _PREAMBLE.sub("", start, count=1).startswith("("):
        return "newick"
    if extension(path) in _EXTENSIONS:
        return _EXTENSIONS[extension(path)]
    raise TreeFileError("cannot tell the tree format: the file starts with neither "
                        "'#NEXUS' nor '(' and its extension is not a known one", path=path)


_NEWICK_SPECIAL = re.compile(r"[\[\]';]")
_UTREE = re.compile(r"^(\s*)utree(?=\s)", re.IGNORECASE | re.MULTILINE)
WEIGHT_COMMENT = re.compile(r"\[&W\s", re.IGNORECASE)  # a tree's probability (MrBayes .trprobs)


def _parse(text: str, path: str | None, format: str, taxa, burnin: float,
           lengths: bool = True, taxa_source: str = "the expected taxa") -> TreeSample:
    where = path or _STRING
    if taxa is not None and not isinstance(taxa, TaxonOrder):
        taxa = TaxonOrder(taxa)
    reference = taxa_source
    entries = []  # (tree number, edge lengths by split, weight), one per tree
    for number, (dtree, declared) in enumerate(_dendropy_trees(text, format, where), 1):
        if taxa is None and declared:
            taxa, reference = TaxonOrder(declared), "the NEXUS taxa"
        elif taxa is None:
            taxa, reference = _first_tree_taxa(dtree), "tree 1"
        edges, root_split = _edge_lengths(dtree, taxa, f"tree {number}", reference, where, lengths)
        entries.append((number, edges, _weight(dtree, number, where), root_split))
    if not entries:
        raise TreeFileError(f"the {format} file holds no trees", path=where)
    if format == "newick" and ";" in text:
        # DendroPy drops words after the last ';' (a tree pasted badly, a stray note)
        tail = _text_after_last_tree(text)
        if tail:
            raise TreeFileError(f"text after the last tree's ';': {tail[:40]!r}", path=where)
    # Trees that carry [&W ...] are a list of topologies, not a chain (DendroPy gives
    # every NEXUS tree a weight of 1, so look for the comment itself).
    n_weights = len(WEIGHT_COMMENT.findall(text))
    weighted = n_weights > 0
    if weighted and n_weights != len(entries):  # DendroPy would give the others weight 1
        raise TreeFileError(f"{n_weights} of the {len(entries)} trees carry a [&W] weight: give "
                            "every tree one (as a MrBayes .trprobs file does) or none", path=where)
    if burnin > 0 and weighted:
        raise TreeFileError(f"burn-in {burnin:g} drops the first trees of a chain, but these "
                            "trees carry weights ([&W], as in a MrBayes .trprobs file, ranked "
                            "by probability): use a burn-in of 0", path=where)
    # Burn-in trees are checked above like the others, but get no Topology.
    dropped = burnin_count(burnin, len(entries))
    entries = entries[dropped:]
    trees = _build_trees(taxa, entries, where)
    weights = np.array([entry[2] for entry in entries], dtype=np.float64)
    return TreeSample(taxa, trees, weights, path, tuple(entry[3] for entry in entries), weighted,
                      dropped + 1)


def _text_after_last_tree(text: str) -> str:
    """The words after the last ';' that is outside comments and quotes, with the comments
    (which may nest, and hold ';') left out."""
    depth, quoted, end = 0, False, 0
    for match in _NEWICK_SPECIAL.finditer(text):
        character = match.group()
        if quoted:
            quoted = character != "'"  # '' inside a name closes and reopens: no matter
        elif character == "[":
            depth += 1
        elif character == "]":
            depth = max(depth - 1, 0)
        elif depth == 0:
            quoted = character == "'"
            if character == ";":
                end = match.end()
    kept, depth = [], 0
    for character in text[end:]:
        depth += (character == "[") - (character == "]" and depth > 0)
        if depth == 0 and character != "]":
            kept.append(character)
    return " ".join("".join(kept).split())


def _dendropy_trees(text: str, format: str, where: str) -> Iterator[tuple]:
    """Yield (DendroPy tree, taxon names a NEXUS TAXA block or translate declared).

    Trees come one by one, so a long MCMC sample never sits in memory as
    DendroPy objects. Whatever DendroPy raises becomes a TreeFileError.
    """
    # DendroPy's Newick reader recurses once per level of nesting, and a ladder-like
    # tree of n taxa nests n deep: Python's default limit (1000) refused one of 990 taxa.
    # Every tree has the first one's taxa, so its '(' count bounds every tree's depth.
    start = text.find("(")
    end = text.find(";", start)
    depth = text.count("(", start, end if end > 0 else len(text)) if start >= 0 else 0
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 2 * depth + 1000))
    try:
        yield from _dendropy_trees_within_limit(text, format, where)
    finally:
        sys.setrecursionlimit(limit)


def _dendropy_trees_within_limit(text: str, format: str, where: str) -> Iterator[tuple]:
    namespace = dendropy.TaxonNamespace(is_case_sensitive=True)
    if format == "nexus":  # PAUP writes unrooted trees as UTREE, which DendroPy skips
        text = _UTREE.sub(r"\1tree", text)
    files = [io.StringIO(text)]
    number = 0
    with warnings.catch_warnings():
        # DendroPy emits Deprecation/User warnings on some inputs; they say
        # nothing the caller can act on, and the test suite turns them into errors.
        warnings.simplefilter("ignore")
        try:
            if format == "nexus":
                trees = _NexusTrees(files, namespace, dendropy.Tree, **_DENDROPY_OPTIONS)
            else:
                trees = dendropy.Tree.yield_from_files(
                    files, "newick", taxon_namespace=namespace, **_DENDROPY_OPTIONS)
            iterator = iter(trees)
        except Exception as error:  # DendroPy's errors share no base class
            raise _parse_error(error, format, where, 1) from error
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                dtree = next(iterator)
            except StopIteration:
                return
            except Exception as error:  # DendroPy's errors share no base class
                raise _parse_error(error, format, where, number + 1) from error
        number += 1
        yield dtree, getattr(trees, "declared", ())


class _EndGuardTokenizer(NexusTokenizer):
    """A NEXUS tokenizer that raises when asked again and again for tokens past the end.

    DendroPy's NEXUS reader loops forever on a file that ends inside a TAXA
    block (it waits for END and gets None at the end of the file); a correct
    file asks past its end only a few times.
    """

    _PAST_END_LIMIT = 100

    def __next__(self):
        try:
            return super().__next__()
        except StopIteration:
            self._past_end = getattr(self, "_past_end", 0) + 1
            if self._past_end > self._PAST_END_LIMIT:
                raise Tokenizer.UnexpectedEndOfStreamError(
                    message="unexpected end of file", line_num=self.current_line_num,
                    col_num=None, stream=self.src) from None
            raise


class _NexusTrees(NexusTreeDataYielder):
    """DendroPy's NEXUS tree yielder, with :class:`_EndGuardTokenizer`.

    It also records the taxa a TAXA block or translate statement declares, so
    that a tree naming another taxon is an error rather than a new taxon.
    """

    declared: tuple[str, ...] = ()

    def create_tokenizer(self, stream, **kwargs):
        self._nexus_tokenizer = _EndGuardTokenizer(stream, **kwargs)
        return self._nexus_tokenizer

    def _parse_taxa_block(self):
        super()._parse_taxa_block()
        self.declared = tuple(taxon.label for taxon in self.attached_taxon_namespace)

    def _parse_translate_statement(self, taxon_namespace, taxon_symbol_mapper=None):
        mapper = super()._parse_translate_statement(taxon_namespace, taxon_symbol_mapper)
        self.declared = tuple(taxon.label for taxon in taxon_namespace)
        return mapper


def _parse_error(error: Exception, format: str, where: str, number: int) -> TreeFileError:
    if isinstance(error, RecursionError):
        detail = "the tree is nested too deeply"
    elif isinstance(error, NewickReader.NewickReaderDuplicateTaxonError):
        # DendroPy's own message is a paragraph about its options.
        detail = f"taxon {str(error.message).rsplit(': ', 1)[-1]!r} appears more than once"
    elif "terminating semicolon" in str(getattr(error, "message", "")):
        detail = "the tree ends before its closing ';'"  # not DendroPy's advice on its options
    else:
        detail = getattr(error, "message", None) or str(error) or type(error).__name__
        detail = str(detail).strip().splitlines()[0][:200]
    line = getattr(error, "line_num", None)
    column = getattr(error, "col_num", None) if line is not None else None
    return TreeFileError(f"malformed {format} (reading tree {number}): {detail}",
                         path=where, line=line, column=column)


def _first_tree_taxa(dtree) -> TaxonOrder:
    """The first tree's taxa in order of appearance (duplicates are caught later)."""
    labels = (leaf.taxon.label for leaf in dtree.leaf_node_iter() if leaf.taxon is not None)
    return TaxonOrder(dict.fromkeys(labels))


def _names_in(taxa: TaxonOrder, labels: list[str]) -> list[str]:
    """The tree's tip labels as names of ``taxa``: a label that is not one, but is one once
    spaces and underscores count as the same (Newick and NEXUS write a name's space as
    '_', so IQ-TREE's tree of an alignment named 'Homo sapiens' says Homo_sapiens), becomes
    that name where exactly one fits. Others stay as they are, for the error."""
    if all(label in taxa for label in labels):
        return labels
    fits: dict[str, list[str]] = {}
    for name in taxa:
        fits.setdefault(name.replace(" ", "_"), []).append(name)
    names = []
    for label in labels:
        candidates = fits.get(label.replace(" ", "_"), [])
        names.append(candidates[0] if label not in taxa and len(candidates) == 1 else label)
    return names


def _check_taxa(labels: list[str], taxa: TaxonOrder, what: str, reference: str,
                where: str) -> None:
    if len(labels) == len(taxa) == len(set(labels)) and all(label in taxa for label in labels):
        return
    seen: set[str] = set()
    twice = next((label for label in labels if label in seen or seen.add(label)), None)
    if twice is not None:
        raise TreeFileError(f"{what} holds taxon {twice!r} more than once", path=where)
    try:
        TaxonOrder(labels).require_same_set(taxa, what, reference)
    except TaxonMismatchError as error:
        raise TaxonMismatchError(error.message, error.only_left, error.only_right,
                                 path=where) from None


def _edge_lengths(dtree, taxa: TaxonOrder, what: str, reference: str, where: str,
                  read_lengths: bool = True) -> tuple[dict[int, float], int | None]:
    """Length of every edge of one DendroPy tree, keyed by its normalised split, and the root's split.

    The two edges at a binary root have the same split, so their lengths add
    up: that is the unrooting; that split is returned as the root's (None
    for a root of three children). ``what`` names the tree, ``reference``
    where ``taxa`` came from; without ``read_lengths`` every length is NaN.
    """
    root = dtree.seed_node
    nodes = [root]
    for node in nodes:  # breadth-first; the list grows as it is read
        nodes.extend(node.child_nodes())
    tips = [node for node in nodes if node.is_leaf()]
    if any(tip.taxon is None or not tip.taxon.label for tip in tips):
        raise TreeFileError(f"{what} has a tip without a taxon name", path=where)
    labels = _names_in(taxa, [tip.taxon.label for tip in tips])
    _check_taxa(labels, taxa, what, reference, where)
    index = {name: i for i, name in enumerate(taxa)}
    index.update({tip.taxon.label: index[label] for tip, label in zip(tips, labels)})
    full = taxa.full_mask
    clade: dict = {}
    lengths: dict[int, float] = {}
    for node in reversed(nodes):  # children before their parent
        kids = node.child_nodes()
        mask = _union(kids, clade) if kids else 1 << index[node.taxon.label]
        clade[node] = mask
        if kids and len(kids) != 2 and not (node is root and len(kids) == 3):
            raise TreeFileError(
                f"{what} is not binary: {_node_name(node is root, mask, taxa)} has "
                f"{len(kids)} {'child' if len(kids) == 1 else 'children'}", path=where)
        if node is not root:
            split = normalize_split(mask, full)
            length = _length(node, mask, taxa, what, where) if read_lengths else math.nan
            lengths[split] = lengths.get(split, 0.0) + length
    kids = root.child_nodes()
    return lengths, (normalize_split(clade[kids[0]], full) if len(kids) == 2 else None)


def _union(kids, clade: dict) -> int:
    mask = 0
    for kid in kids:
        mask |= clade[kid]
    return mask


def _length(node, mask: int, taxa: TaxonOrder, what: str, where: str) -> float:
    length = node.edge.length
    if length is None:
        return math.nan
    length = float(length)
    if not length >= 0 or math.isinf(length):  # a written "nan" too: not a missing length
        raise TreeFileError(f"{what} has branch length {length!r} above "
                            f"{_clade_name(mask, taxa)}, expected a finite length >= 0",
                            path=where)
    return length


def _node_name(is_root: bool, mask: int, taxa: TaxonOrder) -> str:
    return "the root" if is_root else "the node above " + _clade_name(mask, taxa)


def _clade_name(mask: int, taxa: TaxonOrder) -> str:
    members = [taxa[i] for i in bits_of(mask)]
    if len(members) == 1:
        return f"taxon {members[0]!r}"
    shown = ", ".join(repr(name) for name in members[:3])
    more = f" and {len(members) - 3} more" if len(members) > 3 else ""
    return f"the clade of {shown}{more}"


def _weight(dtree, number: int, where: str) -> float:
    weight = getattr(dtree, "weight", None)
    weight = 1.0 if weight is None else float(weight)
    if not (math.isfinite(weight) and weight >= 0):
        raise TreeFileError(f"tree {number} has weight {weight!r}, expected a finite number >= 0",
                            path=where)
    return weight


def _build_trees(taxa: TaxonOrder, entries, where: str) -> tuple[Tree, ...]:
    """Trees from edge lengths by split, sharing one Topology per distinct split set.

    MCMC samples repeat topologies many times, so sharing saves time and memory.
    """
    topologies: dict[frozenset[int], Topology] = {}
    trees = []
    for number, lengths, *_ in entries:
        key = frozenset(lengths)
        topology = topologies.get(key)
        if topology is None:
            try:
                topology = topologies[key] = Topology(taxa, key)
            except TreeFileError as error:
                raise TreeFileError(f"tree {number}: {error.message}", path=where) from None
        trees.append(Tree(topology, np.array([lengths[s] for s in topology.edges])))
    return tuple(trees)
