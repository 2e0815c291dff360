"""Models named by IQ-TREE-style strings, e.g. ``GTR{1,3,0.8,1.2,4}+F{0.3,0.2,0.2,0.3}+G4{0.5}``.

Grammar: ``BASE[{params}]`` followed by any of ``+F`` (empirical frequencies),
``+FQ`` (equal), ``+FO`` (estimated: free, starting from the empirical
ones), ``+F{a,c,g,t}`` (given), ``+I`` / ``+I{p}`` (invariable
sites) and ``+G`` / ``+Gk`` / ``+G{alpha}`` / ``+Gk{alpha}`` (discrete Gamma,
k = 4 by default). Bases, with their parameters in braces:

======  =====================================  =====================
base    parameters                             default frequencies
======  =====================================  =====================
JC      (none; alias JC69)                     equal
F81     (none)                                 empirical
K2P     kappa (alias K80)                      equal
HKY     kappa (alias HKY85)                    empirical
TN      kappa_AG, kappa_CT (aliases TrN, TN93)  empirical
SYM     AC, AG, AT, CG, CT[, GT]               equal
GTR     AC, AG, AT, CG, CT[, GT]               empirical
======  =====================================  =====================

JC, K2P and SYM have equal frequencies by definition, so, unlike IQ-TREE,
which silently ignores a ``+F`` after them, a frequency component other than
``+FQ`` is an error there (F81, HKY and GTR are their unequal-frequency
forms). Each component may appear once. Parameters a string leaves out start
at a neutral value and are listed in :attr:`Model.free`, so a caller can
estimate them (``phylovi loglik`` does, by maximum likelihood).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from phylovi.errors import ModelError
from phylovi.likelihood.models import SubstitutionModel, gtr
from phylovi.likelihood.patterns import SitePatterns, empirical_frequencies
from phylovi.likelihood.rates import SiteRates

_ALIASES = {"JC": "JC", "JC69": "JC", "F81": "F81", "K2P": "K2P", "K80": "K2P", "HKY": "HKY",
            "HKY85": "HKY", "TN": "TN", "TRN": "TN", "TN93": "TN", "SYM": "SYM", "GTR": "GTR"}
_EQUAL_FREQUENCIES = {"JC", "K2P", "SYM"}
_N_PARAMETERS = {"JC": (0,), "F81": (0,), "K2P": (1,), "HKY": (1,), "TN": (2,), "SYM": (5, 6),
                 "GTR": (5, 6)}
_UNEQUAL_FORM = {"JC": "F81", "K2P": "HKY", "SYM": "GTR"}
# More rate categories than this only cost time: the discrete Gamma with 64 is already
# within 1e-4 of the continuous one on ordinary alignments.
_MAX_CATEGORIES = 64
_TOKEN = re.compile(r"\+?([A-Za-z][A-Za-z0-9]*)(\{[^{}]*\})?")


@dataclass
class Model:
    """A substitution model with site-rate heterogeneity.

    Attributes:
        base: canonical base name (JC, F81, K2P, HKY, TN, SYM, GTR).
        parameters: leaf tensors by name: ``kappa`` [1] (K2P, HKY) or [2] (TN),
            ``rates`` [6] (SYM, GTR), ``frequencies`` [4], ``shape`` (with +G),
            ``pinv`` (with +I). Set ``requires_grad`` on any to differentiate.
        n_categories: Gamma categories (1 without +G).
        free: names of parameters the model string did not fix.
    """

    base: str
    parameters: dict[str, torch.Tensor]
    n_categories: int = 1
    free: tuple[str, ...] = field(default=())

    @property
    def substitution(self) -> SubstitutionModel:
        p = self.parameters
        pi = p["frequencies"]
        one = torch.ones((), dtype=pi.dtype, device=pi.device)
        if self.base in ("JC", "F81"):
            exchange = torch.ones(6, dtype=pi.dtype, device=pi.device)
        elif self.base in ("K2P", "HKY"):
            k = p["kappa"][0]
            exchange = torch.stack([one, k, one, one, k, one])
        elif self.base == "TN":
            k_ag, k_ct = p["kappa"][0], p["kappa"][1]
            exchange = torch.stack([one, k_ag, one, one, k_ct, one])
        else:
            exchange = p["rates"]
        return gtr(exchange, pi, self.base)

    @property
    def site_rates(self) -> SiteRates:
        return SiteRates(self.n_categories, self.parameters.get("shape"),
                         self.parameters.get("pinv", 0.0))

    def to_string(self, digits: int = 6) -> str:
        """The model as an IQ-TREE string with every value written out."""
        p = self.parameters
        fmt = lambda t: ",".join(f"{float(v):.{digits}g}" for v in t.detach().reshape(-1))  # noqa: E731
        text = self.base
        if "kappa" in p:
            text += "{" + fmt(p["kappa"]) + "}"
        if "rates" in p:
            text += "{" + fmt(p["rates"][:5] / p["rates"][5]) + "}"
        if self.base not in _EQUAL_FREQUENCIES:
            text += "+F{" + fmt(p["frequencies"]) + "}"
        if "pinv" in p:
            text += "+I{" + fmt(p["pinv"]) + "}"
        if self.n_categories > 1:
            text += f"+G{self.n_categories}{{" + fmt(p["shape"]) + "}"
        return text


def parse_model(text: str, patterns: SitePatterns | None = None,
                dtype: torch.dtype = torch.float64) -> Model:
    """Parse an IQ-TREE-style model string (see the module docstring).

    Args:
        text: the model string.
        patterns: the alignment, for empirical frequencies (``+F``, and the
            default of F81, HKY, TN and GTR); equal frequencies without it.
        dtype: dtype of the parameter tensors.

    Raises:
        ModelError: naming the part of the string that is wrong.
    """
    if not isinstance(text, str):
        raise ModelError(f"a model is given by its string (e.g. 'GTR+G4'), got {text!r}")
    source = text
    text = text.strip().replace(" ", "")
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or (position > 0 and text[position] != "+"):
            raise ModelError(f"cannot read model {source!r} at {text[position:]!r}")
        tokens.append((match.group(1).upper(), _numbers(match.group(2), source)))
        position = match.end()
    if not tokens:
        raise ModelError("the model string is empty")
    name, values = tokens[0]
    if name not in _ALIASES:
        raise ModelError(f"unknown substitution model {tokens[0][0]!r} in {source!r}; "
                         f"expected one of {', '.join(sorted(set(_ALIASES.values())))}")
    base = _ALIASES[name]
    # Read in float64 and checked before the cast, so that a value float32 cannot hold
    # is named as such rather than as out of range.
    tensor = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    parameters: dict[str, torch.Tensor] = {}
    free: list[str] = []
    if values is not None and len(values) not in _N_PARAMETERS[base]:
        raise ModelError(f"{base} takes {' or '.join(map(str, _N_PARAMETERS[base]))} "
                         f"parameters in braces, got {len(values)} in {source!r}")
    if base in ("K2P", "HKY", "TN"):
        n = 1 if base != "TN" else 2
        parameters["kappa"] = tensor(values if values is not None else [2.0] * n)
    elif base in ("SYM", "GTR"):
        rates = values if values is not None else [1.0] * 5
        parameters["rates"] = tensor(list(rates) + [1.0] * (6 - len(rates)))
    if base not in ("JC", "F81") and values is None:
        free.append("kappa" if "kappa" in parameters else "rates")
    frequencies = "equal" if base in _EQUAL_FREQUENCIES else "empirical"
    n_categories = 1
    seen: set[str] = set()
    for name, values in tokens[1:]:
        kind = "F" if name in ("F", "FQ", "FO") else "G" if re.fullmatch(r"G\d*", name) else name
        if kind in seen:
            raise ModelError(f"+{kind} appears more than once in {source!r}")
        seen.add(kind)
        if name in ("F", "FO") and base in _EQUAL_FREQUENCIES:
            raise ModelError(f"{base} has equal base frequencies, so +{name} does not apply "
                             f"(IQ-TREE ignores it); use {_UNEQUAL_FORM[base]} for unequal "
                             f"frequencies, in {source!r}")
        if name in ("F", "FQ", "FO"):
            if name != "F" and values is not None:
                raise ModelError(f"+{name} takes no values, in {source!r}")
            frequencies = values if values is not None else ("equal" if name == "FQ" else "empirical")
            if name == "FO":
                free.append("frequencies")
        elif name == "I":
            parameters["pinv"] = tensor(values[0] if values else 0.1)
            if values is None:
                free.append("pinv")
        elif re.fullmatch(r"G\d*", name):
            n_categories = int(name[1:] or 4)
            if not 1 <= n_categories <= _MAX_CATEGORIES:
                raise ModelError(f"+G takes 1 to {_MAX_CATEGORIES} categories, got "
                                 f"{n_categories} in {source!r}")
            parameters["shape"] = tensor(values[0] if values else 1.0)
            if values is None and n_categories > 1:  # one category has rate 1 whatever the shape
                free.append("shape")
        else:
            raise ModelError(f"unknown model component '+{name}' in {source!r}; expected +F, "
                             "+FQ, +FO, +I or +G")
        if name in ("I",) or name.startswith("G"):
            if values is not None and len(values) != 1:
                raise ModelError(f"+{name} takes one value, got {len(values)} in {source!r}")
    parameters["frequencies"] = _frequencies(frequencies, patterns, torch.float64, source)
    _check_ranges(parameters, source)
    for name, value in parameters.items():
        cast = value.to(dtype)
        if not bool(((cast > 0) == (value > 0)).all() and torch.isfinite(cast).all()):
            raise ModelError(f"{name} {value.tolist()} in {source!r} is beyond the range of "
                             f"{str(dtype).removeprefix('torch.')}")
        parameters[name] = cast
    return Model(base, parameters, n_categories, tuple(free))


def _numbers(braces: str | None, source: str) -> list[float] | None:
    if braces is None:
        return None
    try:
        values = [float(v) for v in braces[1:-1].split(",")]
    except ValueError:
        raise ModelError(f"cannot read the numbers {braces} in model {source!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ModelError(f"the numbers {braces} in model {source!r} must be finite")
    return values


def _frequencies(spec, patterns, dtype, source) -> torch.Tensor:
    if spec == "equal" or (spec == "empirical" and patterns is None):
        return torch.full((4,), 0.25, dtype=dtype)
    if spec == "empirical":
        values = empirical_frequencies(patterns)
        if sum(v > 0 for v in values) < 2:
            raise ModelError(f"the alignment has a single base ({'ACGT'[int(values.argmax())]}), so "
                             f"its empirical frequencies leave no substitutions to model in "
                             f"{source!r}; use equal frequencies (+FQ, or JC/K80) or give +F{{...}}")
        return torch.as_tensor(values, dtype=dtype)
    # A frequency of 0 is what +F reports for a base the alignment lacks, so it is read
    # back; a substitution process needs at least two states, though.
    if len(spec) != 4 or min(spec) < 0 or sum(v > 0 for v in spec) < 2:
        raise ModelError(f"+F takes four frequencies (A, C, G, T), none negative and at least "
                         f"two above 0, got {spec} in {source!r}")
    values = torch.tensor(spec, dtype=dtype)
    if abs(float(values.sum()) - 1) > 1e-3:
        raise ModelError(f"the frequencies {spec} in {source!r} sum to {float(values.sum()):g}, not 1")
    values = values / values.sum()
    # The rate matrix is decomposed with every frequency at least 1e-12 (see models.py):
    # below that its transition probabilities into the base would be those of 1e-12.
    tiny = [base for base, v in zip("ACGT", values.tolist()) if 0 < v < 1e-12]
    if tiny:
        raise ModelError(f"+F gives {tiny[0]} a frequency below 1e-12 in {source!r}, which phylovi "
                         "cannot resolve; give 0 or at least 1e-12")
    if patterns is not None:
        for state, v in enumerate(values.tolist()):
            seen = np.argwhere(patterns.codes == 1 << state) if v == 0 else ()
            if len(seen):
                raise ModelError(f"+F gives {'ACGT'[state]} a frequency of 0 in {source!r}, but "
                                 f"taxon {patterns.taxa[int(seen[0][0])]!r} has {'ACGT'[state]}: "
                                 "the alignment is impossible under that model")
    return values


def _check_exchangeabilities(rates: list[float], source: str) -> None:
    """Rates may be 0, as in IQ-TREE, as long as every base can still reach every other
    one through the rest (else the data could need a change the model never makes); GT,
    the one the others are relative to, must be positive."""
    if min(rates) < 0:
        raise ModelError(f"rates must not be negative in {source!r}")
    if rates[5] <= 0:
        raise ModelError(f"the GT rate must be positive in {source!r}: the others are "
                         "relative to it")
    groups = [{base} for base in range(4)]
    for (i, j), rate in zip(((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)), rates):
        a, b = next(g for g in groups if i in g), next(g for g in groups if j in g)
        if rate > 0 and a is not b:
            groups.remove(b)
            a |= b
    if len(groups) > 1:
        apart = " and ".join("".join("ACGT"[k] for k in sorted(g)) for g in groups)
        raise ModelError(f"the rates in {source!r} never exchange {apart}: the bases must "
                         f"stay connected through the rates that are not 0")


# Exchangeabilities and kappa above this make a rate matrix whose decomposition loses
# its accuracy: 1e300 gave NaN in float64 and -inf in float32, 1e20 a float64 value
# float32 could not reach; up to 1e10 both agree to 1e-5 relative. (Tiny values are
# fine: the others dominate the normalised matrix.)
_LARGEST_RATE = 1e10


def _check_ranges(parameters, source) -> None:
    for name in ("kappa", "shape"):
        if name in parameters and not bool((parameters[name] > 0).all()):
            raise ModelError(f"{name} must be positive in {source!r}")
    if "rates" in parameters:
        _check_exchangeabilities(parameters["rates"].tolist(), source)
    for name in ("kappa", "rates"):
        if name in parameters and not bool((parameters[name] <= _LARGEST_RATE).all()):
            raise ModelError(f"{name} {parameters[name].tolist()} in {source!r}: each must be "
                             f"at most {_LARGEST_RATE:g}")
    if "pinv" in parameters and not 0 <= float(parameters["pinv"]) < 1:
        raise ModelError(f"+I needs a proportion in [0, 1), got {float(parameters['pinv'])} in {source!r}")
