"""Read DNA alignments (FASTA, NEXUS, PHYLIP) into an :class:`Alignment`.

Parsing is Biopython's; this module detects the format, turns every parser
failure into one :class:`~phylovi.errors.AlignmentError` line that names the
file, and checks what Biopython does not: distinct taxon names, equal lengths,
at least one site and the DNA alphabet.

The alphabet is ``A C G T``, ``U`` (read as ``T``), the IUPAC ambiguity codes
``R Y K M S W B D H V`` and the fully ambiguous ``N X ? -``, in either case.
Nothing else is accepted: ``.`` means "gap" to some programs and "same as the
first taxon" to others, so guessing would silently change the data.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from functools import partial

from Bio.AlignIO.NexusIO import NexusIterator
from Bio.AlignIO.PhylipIO import (
    PhylipIterator,
    RelaxedPhylipIterator,
    SequentialPhylipIterator,
)
from Bio.SeqIO.FastaIO import SimpleFastaParser

from phylovi.errors import AlignmentError, require_path
from phylovi.io.files import extension, read_bytes
from phylovi.trees.taxa import TaxonOrder

FORMATS = ("fasta", "nexus", "phylip")
DNA_CHARACTERS = "ACGTURYKMSWBDHVNX?-"

_EXTENSIONS = {
    ".fa": "fasta", ".fasta": "fasta", ".fas": "fasta", ".fna": "fasta",
    ".nex": "nexus", ".nexus": "nexus", ".nxs": "nexus",
    ".phy": "phylip", ".phylip": "phylip",
}
_TITLES = {"fasta": "FASTA", "nexus": "NEXUS", "phylip": "PHYLIP"}
# re.ASCII keeps IGNORECASE from letting e.g. the Kelvin sign pass as "K".
_OUTSIDE_ALPHABET = re.compile(f"[^{re.escape(DNA_CHARACTERS)}]", re.IGNORECASE | re.ASCII)
# PHYLIP 3 allowed option letters after the counts: I (interleaved) and S (sequential)
# only describe the layout, which the reader finds out anyway; others announce extra
# lines (weights, categories, ...) that are not sequences.
_PHYLIP_HEADER = re.compile(r"\s*(\d+)\s+(\d+)\s*(?:\s([A-Za-z]+)\s*)?")


@dataclass(frozen=True)
class Alignment:
    """A validated DNA alignment.

    Build it with :func:`read_alignment` or :func:`parse_alignment`, which
    check every invariant below.

    Attributes:
        taxa: the taxon names, in the file's order.
        sequences: one upper-case string per taxon, in ``taxa`` order, all of
            length ``n_sites``, over :data:`DNA_CHARACTERS`.
        path: the file it was read from, or ``None``.
    """

    taxa: TaxonOrder
    sequences: tuple[str, ...]
    path: str | None = None

    @property
    def n_taxa(self) -> int:
        return len(self.taxa)

    @property
    def n_sites(self) -> int:
        return len(self.sequences[0]) if self.sequences else 0


def read_alignment(path: str | os.PathLike, format: str | None = None) -> Alignment:
    """Read a DNA alignment file.

    Args:
        path: a FASTA, NEXUS or PHYLIP (strict or relaxed names, interleaved
            or sequential, PHYLIP 3's ``I`` or ``S`` after the counts allowed) file,
            UTF-8 encoded.
        format: one of :data:`FORMATS`; by default the format is told from the
            content (``>``, ``#NEXUS`` or a line of two integers), else from
            the extension.

    Returns:
        The alignment, with ``path`` set.

    Raises:
        AlignmentError: the file cannot be read or is not a valid DNA alignment.
    """
    require_path(path, "the alignment file")
    path = os.fspath(path)
    try:
        data = read_bytes(path)
    except OSError as error:
        raise AlignmentError(f"cannot read the alignment file: {error.strerror or error}",
                             path=path) from error
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise AlignmentError(f"the file is not UTF-8 text (byte {data[error.start]:#04x} "
                             f"at offset {error.start})", path=path) from None
    return parse_alignment(text, format, path)


def parse_alignment(text: str, format: str | None = None,
                    path: str | os.PathLike | None = None) -> Alignment:
    """Parse alignment text; :func:`read_alignment` without the file.

    Args:
        text: the whole content of an alignment file.
        format: one of :data:`FORMATS`, or ``None`` to detect it from the
            content and then from the extension of ``path``.
        path: where the text came from, used in error messages and detection.

    Returns:
        The alignment.

    Raises:
        AlignmentError: the text is not a valid DNA alignment.
    """
    path = None if path is None else os.fspath(path)
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # old Windows and Mac files
    if not text.strip():
        raise AlignmentError("the alignment is empty", path=path)
    if "\0" in text:  # else Biopython fails with "embedded null character"
        raise AlignmentError("the text holds a NUL character; is this a binary file?",
                             path=path, line=text.count("\n", 0, text.index("\0")) + 1)
    format = _choose_format(text, format, path)
    records = _parse_records(text, format, path)
    locate = partial(_fasta_position, text) if format == "fasta" else _nowhere
    return _build_alignment(records, path, locate)


def _choose_format(text: str, format: str | None, path: str | None) -> str:
    if format is not None:
        if not isinstance(format, str) or format.lower() not in FORMATS:
            raise AlignmentError(f"unknown alignment format {format!r}; expected one of "
                                 f"{', '.join(FORMATS)}", path=path)
        return format.lower()
    start = text.lstrip()
    if start.startswith(">"):
        return "fasta"
    if start[:6].upper() == "#NEXUS":
        return "nexus"
    if _PHYLIP_HEADER.fullmatch(start.split("\n", 1)[0]):
        return "phylip"
    if extension(path) in _EXTENSIONS:
        return _EXTENSIONS[extension(path)]
    raise AlignmentError("cannot tell the alignment format: the text starts with neither '>', "
                         "'#NEXUS' nor a PHYLIP header and the extension is not one of "
                         f"{' '.join(_EXTENSIONS)}", path=path)


def _parse_records(text: str, format: str, path: str | None) -> list[tuple[str, str]]:
    """(name, sequence) pairs as the file holds them, not yet validated."""
    parse = {"fasta": _parse_fasta, "nexus": _parse_nexus, "phylip": _parse_phylip}[format]
    with warnings.catch_warnings():
        # Biopython warns about oddities it then tolerates; we report what matters.
        warnings.simplefilter("ignore")
        try:
            return parse(text, path)
        except AlignmentError:
            raise
        except Exception as error:  # Biopython fails with many types on malformed input
            raise AlignmentError(f"not a valid {_TITLES[format]} alignment: {_describe(error)}",
                                 path=path) from error


def _describe(error: Exception) -> str:
    if isinstance(error, UnicodeEncodeError):  # Biopython's sequences must be ASCII
        return f"character {error.object[error.start]!r} is not a DNA character"
    return str(error).strip() or type(error).__name__


def _parse_fasta(text: str, path: str | None) -> list[tuple[str, str]]:
    # SimpleFastaParser silently skips text before the first header; we refuse it.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not line.startswith(">"):
                raise AlignmentError("FASTA text must start with a '>' header line",
                                     path=path, line=number)
            break
    records = []
    for index, (title, sequence) in enumerate(SimpleFastaParser(io.StringIO(text))):
        words = title.split(None, 1)
        if not words:
            raise AlignmentError("a FASTA header has no taxon name", path=path,
                                 line=_fasta_position(text, index)[0])
        # the name is the first word, as in Biopython; any blank inside a sequence (a tab
        # from a spreadsheet) is layout, as spaces already are for Biopython
        records.append((words[0], "".join(sequence.split())))
    return records


def _parse_nexus(text: str, path: str | None) -> list[tuple[str, str]]:
    declared, typed = _nexus_format(text, path)
    # {AG} (uncertainty) means for a likelihood what (AG) (polymorphism) does, which
    # Biopython reads as the ambiguity code R; IQ-TREE and MrBayes read both.
    text = _MATRIX.sub(lambda block: block.group(1) + _UNCERTAIN.sub(r"(\1)", block.group(2))
                       + block.group(3), text)
    try:
        alignments = list(NexusIterator(io.StringIO(text)))
    except Exception as original:
        # Strict NEXUS needs quotes around a name with '-' ('Homo-sapiens'), but many
        # files leave them out and MrBayes reads them; so does the newick tree reader.
        quoted = _quote_hyphenated_names(text)
        try:
            if quoted == text:
                raise original
            alignments = list(NexusIterator(io.StringIO(quoted)))
        except Exception:
            if "StopIteration" in str(original):  # Biopython ran out of matrix rows
                raise AlignmentError("the MATRIX does not fit its DIMENSIONS (a row shorter "
                                     "or longer than NCHAR, or fewer rows than NTAX)",
                                     path=path) from None
            # Biopython reads a short row on into the next taxon's name, and then says
            # "not enough taxa" or "illegal character": name the row instead.
            problem = _matrix_rows_problem(text)
            if problem is not None:
                raise AlignmentError(problem, path=path) from None
            if not typed:  # Biopython then fails at the next command, whatever it is
                raise AlignmentError("the NEXUS DATA block declares no DATATYPE (FORMAT "
                                     "DATATYPE=DNA;)", path=path) from None
            raise original from None  # the file's own error, not the quoted copy's
    if not alignments:
        raise AlignmentError("the NEXUS file has no DATA or CHARACTERS matrix", path=path)
    # record.name is the name as written; Biopython renames duplicates in record.id.
    records = [(record.name, str(record.seq)) for record in alignments[0]]
    # Biopython keeps the file's own GAP and MISSING symbols; phylovi's are '-' and '?'
    # (a symbol already in phylovi's alphabet, such as DS1's GAP=?, means the same).
    for symbol, ours in declared.items():
        if _OUTSIDE_ALPHABET.fullmatch(symbol):
            records = [(name, sequence.replace(symbol, ours)) for name, sequence in records]
    return records


def _matrix_rows_problem(text: str) -> str | None:
    """Which taxon's characters (its row, or its rows of an interleaved MATRIX) are not
    NCHAR, or how many taxa are missing; None when the matrix is not of one of those
    shapes or fits."""
    plain = _NEXUS_COMMENT.sub("", text)
    matrix = _MATRIX.search(plain)
    if matrix is None:
        return None
    # the sizes and format of the block that holds this (the first) matrix
    before = plain[:matrix.start()]
    sizes = dict(re.findall(r"\b(ntax|nchar)\s*=\s*(\d+)", before, re.IGNORECASE))
    sizes = {key.lower(): int(value) for key, value in sizes.items()}
    formats = _NEXUS_FORMAT.findall(before)
    interleaved = bool(formats) and bool(
        re.search(r"\binterleave\b(?!\s*=\s*no)", formats[-1], re.IGNORECASE))
    rows = [line.split() for line in matrix.group(2).splitlines() if line.strip()]
    if not rows or any(len(row) != 2 for row in rows) and not interleaved:
        return None
    lengths: dict[str, int] = {}  # each taxon's characters, over every block
    for name, *pieces in rows:
        if not pieces:
            return None
        sequence = re.sub(r"[({][^)}]*[)}]", "x", "".join(pieces))  # (AG) is one character
        lengths[name.strip(chr(39))] = lengths.get(name.strip(chr(39)), 0) + len(sequence)
    where = " over the interleaved blocks" if interleaved else ""
    for name, length in lengths.items():
        if "nchar" in sizes and length != sizes["nchar"]:
            return (f"taxon {name} has {length} characters{where}, not "
                    f"NCHAR={sizes['nchar']}")
    if "ntax" in sizes and len(lengths) != sizes["ntax"]:
        return f"the MATRIX has {len(lengths)} taxa, not NTAX={sizes['ntax']}"
    return None


_NEXUS_COMMENT = re.compile(r"\[[^\]]*\]")
_NEXUS_FORMAT = re.compile(r"\bformat\b([^;]*);", re.IGNORECASE)
_NUCLEOTIDE_TYPES = {"dna", "rna", "nucleotide"}


def _nexus_format(text: str, path: str | None) -> tuple[dict[str, str], bool]:
    """Check the FORMAT command (a nucleotide DATATYPE, a MATRIX ended by ';'); return
    its gap and missing symbols as {symbol: '-' or '?'}, and whether it has a DATATYPE."""
    plain = _NEXUS_COMMENT.sub("", text)
    matrix = _MATRIX.search(plain)
    if matrix is not None and re.search(r"^\s*end\s*$", matrix.group(2),
                                        re.IGNORECASE | re.MULTILINE):
        raise AlignmentError("the MATRIX is not closed by ';' before END", path=path)
    found = _NEXUS_FORMAT.search(plain)
    if found is None:
        return {}, False
    words = dict(re.findall(r"(\w+)\s*=\s*(\"[^\"]*\"|'[^']*'|\S+)", found.group(1)))
    words = {key.lower(): value for key, value in words.items()}
    datatype = words.get("datatype", "").lower()
    if datatype and datatype not in _NUCLEOTIDE_TYPES:
        raise AlignmentError(f"DATATYPE={words['datatype']}: phylovi reads DNA (or RNA) "
                             "alignments only", path=path)
    symbols = {words[key]: ours for key, ours in (("gap", "-"), ("missing", "?"))
               if len(words.get(key, "")) == 1}
    return symbols, bool(datatype)


_MATRIX = re.compile(r"(\bmatrix\b)(.*?)(;)", re.IGNORECASE | re.DOTALL)
_UNCERTAIN = re.compile(r"\{([A-Za-z?-]+)\}")
# A first word with a '-' and a character no sequence has (a letter outside IUPAC or a
# digit), or with more of the row after it, is a taxon name, not a row of gapped sequence.
_HYPHENATED_NAME = re.compile(r"^(\s*)([^\s'\[]*-[^\s'\[]*)(?=\s)", re.MULTILINE)
_SEQUENCE_CHARACTERS = set("ACGTURYKMSWBDHVNX?-.acgturykmswbdhvnx")


def _quote_hyphenated_names(text: str) -> str:
    def quote_row(row: re.Match) -> str:
        word = row.group(2)
        line_end = row.string.find("\n", row.end())
        rest = row.string[row.end():line_end if line_end >= 0 else len(row.string)]
        # IUPAC letters and '-' (CA-TX, Gamma-x) may be a gapped row too; a name has its
        # sequence after it on the same line
        if set(word) <= _SEQUENCE_CHARACTERS and not rest.strip():
            return row.group(0)
        return f"{row.group(1)}'{word}'"

    def quote_matrix(block: re.Match) -> str:
        return block.group(1) + _HYPHENATED_NAME.sub(quote_row, block.group(2)) + block.group(3)

    return _MATRIX.sub(quote_matrix, text)


class _RelaxedSequentialPhylipIterator(SequentialPhylipIterator):
    """Relaxed names with sequences wrapped over several lines (Biopython lacks it)."""

    _split_id = RelaxedPhylipIterator._split_id


# Relaxed before strict: relaxed rejects a strict file whose names abut the data
# (the shapes disagree), while strict would cut a long relaxed name silently.
_PHYLIP_READERS = (RelaxedPhylipIterator, _RelaxedSequentialPhylipIterator,
                   PhylipIterator, SequentialPhylipIterator)


_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t\r]*\n)+")


def _parse_phylip(text: str, path: str | None) -> list[tuple[str, str]]:
    body = text.lstrip()
    header = _PHYLIP_HEADER.fullmatch(body.split("\n", 1)[0])
    if header is None:
        raise AlignmentError("the first line of a PHYLIP file must be two integers, "
                             "the numbers of taxa and sites", path=path)
    declared = (int(header[1]), int(header[2]))
    options = (header[3] or "").upper()
    if options.strip("IS"):
        raise AlignmentError(f"PHYLIP header option {options!r} is not supported (only I and S, "
                             "which describe the layout)", path=path,
                             line=text.count("\n", 0, len(text) - len(body)) + 1)
    n_lines = sum(1 for line in body.split("\n")[1:] if line.strip())
    if not 0 < declared[0] <= n_lines:
        # Biopython loops forever on 0 taxa, and for ages on more taxa than lines.
        raise AlignmentError(f"the PHYLIP header declares {declared[0]} taxa but {n_lines} "
                             "lines of data follow it", path=path)
    # Biopython takes a blank line after the header, or between the rows of a file of
    # one row per taxon, for an empty row; IQ-TREE and RAxML skip it. (Between the
    # blocks of an interleaved file a blank line is layout, which Biopython knows.)
    _, _, rest = body.partition("\n")
    first = f"{declared[0]} {declared[1]}"  # without the option letters Biopython refuses
    if n_lines == declared[0]:
        rest = "\n".join(line for line in rest.split("\n") if line.strip())
    readable = first + "\n" + _LEADING_BLANK_LINES.sub("", rest)
    problem = fitting = None
    for reader in _PHYLIP_READERS:
        try:
            alignments = list(reader(io.StringIO(readable)))
        except Exception as error:  # the next variant may fit; keep the first reason
            problem = problem or _describe(error)
            continue
        if len(alignments) != 1:
            problem = problem or f"found {len(alignments)} alignments, expected 1"
            continue
        records = [(record.id, str(record.seq)) for record in alignments[0]]
        found = (len(records), len(records[0][1]) if records else 0)
        if found == declared:
            # A layout can fit the header by chance: the interleaved reader takes the
            # continuation line of a wrapped sequential file for a taxon when the names are
            # as long as its first word. Prefer a reading whose rows are all DNA of the
            # declared length under distinct names; else the first that fits, whose
            # problem the checks downstream then name.
            if _plausible_records(records, declared[1]):
                _check_phylip_leftover(body, records, path)
                return records
            fitting = fitting or records
            continue
        problem = problem or (f"the header declares {declared[0]} taxa and {declared[1]} sites "
                              f"but the file holds {found[0]} taxa and {found[1]} sites")
    if fitting is not None:
        _check_phylip_leftover(body, fitting, path)
        return fitting
    header_line = text.count("\n", 0, len(text) - len(body)) + 1
    _check_phylip_lengths(body, declared, path, header_line)
    raise AlignmentError(f"not a valid PHYLIP alignment: {problem}", path=path)


def _plausible_records(records: list[tuple[str, str]], n_sites: int) -> bool:
    return (len({name for name, _ in records}) == len(records)
            and all(len(sequence) == n_sites and set(sequence) <= _SEQUENCE_CHARACTERS
                    for _, sequence in records))


def _check_phylip_leftover(body: str, records: list[tuple[str, str]], path: str | None) -> None:
    """Refuse data beyond what the header declares: Biopython stops reading there, so
    an extra taxon (a header not updated after adding one) would be dropped silently."""
    characters = sum(len("".join(line.split())) for line in body.split("\n")[1:])
    expected = sum(len("".join(name.split())) + len(sequence) for name, sequence in records)
    if characters > expected:
        raise AlignmentError(f"there is more data than the header's {len(records)} taxa x "
                             f"{len(records[0][1])} sites (an extra taxon, or a header not "
                             "updated?)", path=path)


def _check_phylip_lengths(body: str, declared: tuple[int, int], path: str | None,
                          header_line: int) -> None:
    """Name the taxon of the wrong length in a one-line-per-taxon file.

    Biopython only says that lengths differ; this is the commonest PHYLIP mistake.
    """
    rows = [(number, line.split(None, 1)) for number, line
            in enumerate(body.split("\n"), start=header_line) if line.strip()][1:]
    if len(rows) != declared[0]:
        return
    for number, (name, *sequence) in rows:
        n_sites = len("".join("".join(sequence).split()))
        if n_sites != declared[1]:
            raise AlignmentError(f"taxon {name!r} has {n_sites} sites; expected {declared[1]} "
                                 "as the PHYLIP header declares", path=path, line=number)


def _build_alignment(records: list[tuple[str, str]], path: str | None, locate) -> Alignment:
    if not records:
        raise AlignmentError("the alignment holds no sequences", path=path)
    names = [name for name, _ in records]
    sequences = [sequence for _, sequence in records]
    _check_names(names, path, locate)
    _check_lengths(names, sequences, path, locate)
    _check_characters(names, sequences, path, locate)
    # After the alphabet check every character is ASCII, so upper() keeps lengths.
    return Alignment(TaxonOrder(names), tuple(s.upper() for s in sequences), path)


def _check_names(names: list[str], path: str | None, locate) -> None:
    seen = set()
    for index, name in enumerate(names):
        if not name:
            raise AlignmentError(f"sequence {index + 1} has an empty taxon name", path=path,
                                 line=locate(index)[0])
        if name in seen:
            raise AlignmentError(f"taxon {name!r} appears more than once", path=path,
                                 line=locate(index)[0])
        seen.add(name)


def _check_lengths(names: list[str], sequences: list[str], path: str | None, locate) -> None:
    expected = len(sequences[0])
    if expected == 0 and any(sequences):  # name the empty one, not the next
        raise AlignmentError(f"taxon {names[0]!r} has no sequence", path=path,
                             line=locate(0)[0])
    for index, (name, sequence) in enumerate(zip(names, sequences)):
        if len(sequence) != expected:
            raise AlignmentError(f"taxon {name!r} has {len(sequence)} sites; expected "
                                 f"{expected} like taxon {names[0]!r}", path=path,
                                 line=locate(index)[0])
    if expected == 0:
        raise AlignmentError("the alignment has no sites", path=path)


def _check_characters(names: list[str], sequences: list[str], path: str | None,
                      locate) -> None:
    for index, (name, sequence) in enumerate(zip(names, sequences)):
        bad = _OUTSIDE_ALPHABET.search(sequence)
        if bad is not None:
            line, column = locate(index, bad.start())
            # '.' is a gap to IQ-TREE but "as the first sequence" in NEXUS's MATCHCHAR
            # and some PHYLIP files: a guess could silently change the data.
            hint = ("; write '-' for a gap, or the first sequence's base where '.' means "
                    "'same as the first sequence'" if bad.group() == "." else "")
            raise AlignmentError(
                f"taxon {name!r} has {bad.group()!r} at site {bad.start() + 1}, which is not "
                f"a DNA character (expected one of {DNA_CHARACTERS}){hint}",
                path=path, line=line, column=column)


def _nowhere(record: int, site: int | None = None) -> tuple[None, None]:
    return None, None


def _fasta_position(text: str, record: int, site: int | None = None
                    ) -> tuple[int | None, int | None]:
    """1-based (line, column) of a FASTA record's header, or of its 0-based ``site``.

    Mirrors SimpleFastaParser: a header starts with '>', sequence lines lose
    trailing whitespace and inner spaces.
    """
    index = -1
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith(">"):
            index += 1
            if index > record:
                break
            if index == record and site is None:
                return number, None
        elif index == record:
            for column, char in enumerate(line.rstrip(), start=1):
                if char != " ":
                    if site == 0:
                        return number, column
                    site -= 1
    return None, None
