"""Log-likelihoods of batches of trees for one alignment and one model."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from phylovi.devices import resolve_device
from phylovi.errors import ConfigError, PhyloviError, require_type
from phylovi.likelihood import cpu_kernel
from phylovi.likelihood.model_string import Model
from phylovi.likelihood.models import compact_spectrum
from phylovi.likelihood.patterns import SitePatterns, constant_pattern_states
from phylovi.likelihood.pruning import build_schedule, prune
from phylovi.likelihood.tips import code_table
from phylovi.trees import Topology, TopologyBatch, Tree

# float64 holds site likelihoods down to about exp(-708); below this many taxa
# a site rarely gets there, so rescaling is skipped, and a call that underflows
# anyway (extreme base frequencies, very long branches) is evaluated again with it.
_FLOAT64_UNSCALED_TAXA = 64
_KEPT_SINGLE_BATCHES = 16  # one-topology batches (and their schedules) kept per likelihood
_TREES_PER_CALL = 256  # tree_log_likelihoods: enough to batch well, few enough to bound memory


class TreeLikelihood:
    """``log p(alignment | topology, branch lengths, model)`` for batches of trees.

    Args:
        patterns: the alignment's site patterns; their taxon order is the analysis's.
        model: substitution model and site rates; its tensors may require gradients.
        dtype: float64 (default) or float32; the kernel computes in it.
        device: where the kernel runs (``"cpu"``, ``"cuda"``); default CPU.
        rescale: rescale partials against underflow (every node in the torch
            kernel; only where they fall far below 1 in the C kernel); default on
            for float32 and for float64 above 64 taxa.

    Shapes follow :mod:`phylovi.likelihood.pruning`.
    """

    def __init__(self, patterns: SitePatterns, model: Model, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None, rescale: bool | None = None):
        if dtype not in (torch.float64, torch.float32):
            raise ConfigError(f"the kernel computes in float64 or float32, not {dtype}")
        require_type(patterns, SitePatterns, "the likelihood's patterns (compress_patterns)")
        require_type(model, Model, "the likelihood's model (parse_model)")
        self.patterns = patterns
        self.model = model
        self.dtype = dtype
        self.device = resolve_device(device)
        like = dict(dtype=dtype, device=self.device)
        self.tip_codes = torch.as_tensor(patterns.codes.astype("int64"), device=self.device)
        self.code_table = code_table(**like)
        self.weights = torch.as_tensor(patterns.weights, **like)
        self.constant = torch.as_tensor(constant_pattern_states(patterns), **like)  # [P, 4]
        self.constant_patterns = self.constant.any(-1).nonzero().squeeze(-1)
        self.constant_states = self.constant[self.constant_patterns]  # [n_constant, 4]
        self._cpu_tips = None  # the C kernel's (tip, invariant) planes, built on first use
        # Batches of one topology, kept so that a caller that evaluates the same tree
        # again and again (MCMC, VI) does not rebuild its schedule on every call.
        self._single_batches: dict[Topology, TopologyBatch] = {}
        if rescale is None:
            rescale = dtype != torch.float64 or len(patterns.taxa) > _FLOAT64_UNSCALED_TAXA
        self.rescale = rescale
        self._fixed_key, self._fixed_parts = None, None  # see _fixed_model

    @property
    def taxa(self):
        return self.patterns.taxa

    def batch(self, topologies) -> TopologyBatch:
        """A :class:`TopologyBatch` of ``topologies``, checked against the alignment's taxa."""
        if isinstance(topologies, TopologyBatch):
            batch = topologies
        elif isinstance(topologies, Topology):
            batch = self._single_batches.get(topologies)
            if batch is None:
                if len(self._single_batches) >= _KEPT_SINGLE_BATCHES:
                    self._single_batches.pop(next(iter(self._single_batches)))
                batch = self._single_batches[topologies] = TopologyBatch([topologies])
        else:
            items = (list(topologies) if isinstance(topologies, Iterable)
                     and not isinstance(topologies, str) else None)
            if items is None or not all(isinstance(topology, Topology) for topology in items):
                raise ConfigError("expected a Topology, a list of them or a TopologyBatch (of "
                                  f"a Tree, its .topology), got {type(topologies).__name__}")
            batch = TopologyBatch(items)
        if batch.taxa != self.taxa:
            batch.taxa.require_same_set(self.taxa, "the tree", "the alignment")
            raise PhyloviError("the trees order their taxa differently from the alignment; "
                               "read them with the alignment's taxon order")
        return batch

    def log_likelihood(self, topologies: Topology | Sequence[Topology] | TopologyBatch,
                       branch_lengths: torch.Tensor) -> torch.Tensor:
        """Log-likelihood of each topology under each of its branch-length samples.

        Args:
            topologies: one topology, or a batch of ``B``.
            branch_lengths: ``[*S, n_edges]`` for one topology, ``[B, *S, n_edges]``
                for a batch (``*S`` is any sample shape, possibly empty).

        Returns:
            ``[*S]`` or ``[B, *S]`` log-likelihoods; -inf for a sample with a negative or
            non-finite length (not an error, so that a sampler's wild proposal is
            simply rejected).
        """
        single = isinstance(topologies, Topology)
        batch, lengths, sample_shape = self._prepare(topologies, branch_lengths)
        if lengths.shape[1] == 0:  # no samples: nothing to evaluate
            value = lengths.new_zeros(len(batch), *sample_shape)
            return value[0] if single else value

        def evaluate(rescale):
            if cpu_kernel.supports_device(self.device, self.dtype):
                return self._fused_log_likelihood(batch, lengths, rescale)
            # Sum in float64: a float32 sum over thousands of patterns loses ~0.1 nat.
            site = self._site_log_likelihoods(batch, lengths, rescale)
            return (site.double() @ self.weights.double()).to(site.dtype)

        value = _invalid_to_minus_inf(self._underflow_checked(evaluate), lengths)
        value = value.reshape(len(batch), *sample_shape)
        return value[0] if single else value

    def site_log_likelihoods(self, topologies, branch_lengths: torch.Tensor) -> torch.Tensor:
        """Per-pattern log-likelihoods ``[..., P]`` (weight by ``patterns.weights`` to sum)."""
        single = isinstance(topologies, Topology)
        batch, lengths, sample_shape = self._prepare(topologies, branch_lengths)
        if lengths.shape[1] == 0:
            site = lengths.new_zeros(len(batch), *sample_shape, len(self.weights))
            return site[0] if single else site
        site = self._underflow_checked(lambda rescale: self._site_log_likelihoods(
            batch, lengths, rescale))
        site = _invalid_to_minus_inf(site, lengths)
        site = site.reshape(len(batch), *sample_shape, -1)
        return site[0] if single else site

    def tree_log_likelihoods(self, trees: Sequence[Tree]) -> list[float]:
        """The log-likelihood of each tree at its own branch lengths, as floats: trees of
        any shapes, evaluated a few hundred per batched call, without gradients. In float32
        the sites' values are summed in float64: a float32 total is rounded to 0.25-0.5
        nats beyond |lnL| = 2.1e6."""
        values = []
        with torch.no_grad():
            for batch, lengths in self._tree_batches(trees):
                if self.dtype == torch.float64:
                    value = self.log_likelihood(batch, lengths)
                else:
                    value = self.site_log_likelihoods(batch, lengths).double() @ \
                        self.weights.double()
                values.extend(value.tolist())
        return values

    def tree_site_log_likelihoods(self, trees: Sequence[Tree]) -> torch.Tensor:
        """Per-pattern log-likelihoods ``[n_trees, P]`` of each tree at its own branch
        lengths, batched as :meth:`tree_log_likelihoods`; index the last axis with
        ``patterns.site_pattern`` for the alignment's sites."""
        with torch.no_grad():
            parts = [self.site_log_likelihoods(batch, lengths)
                     for batch, lengths in self._tree_batches(trees)]
        if not parts:
            return torch.empty(0, len(self.weights), dtype=self.dtype, device=self.device)
        return torch.cat(parts)

    def _tree_batches(self, trees: Sequence[Tree]):
        """``(TopologyBatch, lengths [B, n_edges])`` of at most :data:`_TREES_PER_CALL`
        trees at a time."""
        trees = list(trees)
        for tree in trees:
            require_type(tree, Tree, "each tree (read_tree, read_trees)")
        for start in range(0, len(trees), _TREES_PER_CALL):
            chunk = trees[start:start + _TREES_PER_CALL]
            lengths = torch.stack([torch.as_tensor(tree.branch_lengths, dtype=self.dtype,
                                                   device=self.device) for tree in chunk])
            yield self.batch([tree.topology for tree in chunk]), lengths

    def _underflow_checked(self, evaluate):
        """``evaluate(self.rescale)``, again with rescaling where that gave -inf without it:
        an impossible tree stays -inf, a site likelihood below float64's range does not."""
        value = evaluate(self.rescale)
        # one reduction: a -inf or NaN anywhere makes the sum so (half the cost of isfinite)
        if not self.rescale and not math.isfinite(float(value.detach().sum())):
            value = evaluate(True)
        return value

    def _prepare(self, topologies, branch_lengths: torch.Tensor):
        """The batch, lengths as ``[B, S, n_edges]``, and the caller's sample shape."""
        batch = self.batch(topologies)
        if not isinstance(branch_lengths, torch.Tensor):  # a list or a numpy array
            try:
                branch_lengths = torch.as_tensor(branch_lengths, dtype=self.dtype,
                                                 device=self.device)
            except (TypeError, ValueError, RuntimeError) as error:
                raise ConfigError(f"branch lengths must be numbers ({error})") from None
        lengths = branch_lengths.unsqueeze(0) if isinstance(topologies, Topology) else branch_lengths
        if lengths.shape[0] != len(batch) or lengths.shape[-1] != batch.n_edges:
            raise ConfigError(f"branch lengths of shape {tuple(branch_lengths.shape)} do not fit "
                             f"{len(batch)} topologies of {batch.n_edges} edges")
        sample_shape = lengths.shape[1:-1]
        return batch, lengths.reshape(len(batch), -1, batch.n_edges), sample_shape

    def _matrices(self, lengths: torch.Tensor, substitution, site_rates):
        """Transition matrices ``[B * n_edges, S, C, 4, 4]`` and root frequencies ``[4]``.

        ``substitution`` and ``site_rates`` are the model's, built once per call by the caller.
        """
        # Transition matrices are few and cheap: build them in float64 whatever the
        # kernel's dtype, so float32 loses precision only in the partials.
        rates = site_rates.rates(torch.float64, self.device)
        times = lengths.to(torch.float64).transpose(1, 2)[..., None] * rates  # [B, n_edges, S, C]
        matrices = substitution.transition_matrices(times).flatten(0, 1).to(self.dtype)
        frequencies = substitution.frequencies.to(dtype=self.dtype, device=self.device)
        return matrices, frequencies

    def _fused_log_likelihood(self, batch: TopologyBatch, lengths: torch.Tensor,
                              rescale: bool) -> torch.Tensor:
        """``[B, S]`` from the C kernel, gradient included in the same pass."""
        program, (tips, invariant, codes) = cpu_kernel.node_program(batch), self._cpu_planes()
        fixed = self._fixed_model()
        if fixed is not None:
            # Only the branch lengths can need a gradient: the chain rule through the
            # transition matrices is done by hand, not by autograd.
            rates, eigenvalues, products, frequencies, pinv, category_weights, f81 = fixed
            return cpu_kernel.fixed_model_log_likelihood(
                lengths, rates, eigenvalues, products, self.dtype, program, frequencies, pinv,
                tips, category_weights, self.weights, invariant, rescale, f81, codes)
        substitution, site_rates = self.model.substitution, self.model.site_rates
        # pinv in float64 whatever the dtype: float32's rounding of a pinv near 1 made
        # 1 - pinv (the variable sites' share) off by percents, nats in all
        pinv = site_rates.pinv.to(dtype=torch.float64, device=self.device)
        matrices, frequencies = self._matrices(lengths, substitution, site_rates)
        return cpu_kernel.FusedLogLikelihood.apply(
            matrices, frequencies, pinv, program, tips, site_rates.weights(self.dtype),
            self.weights, invariant, rescale, substitution.is_f81, codes)

    def _fixed_model(self):
        """What the kernel needs of a model none of whose parameters requires a gradient:
        ``(rates, eigenvalues, products, frequencies, pinv, category weights, is_f81)``,
        or ``None`` when one does. Kept while the parameters keep their values, since
        building it (the model's objects, the discrete-Gamma rates, the eigensystem's
        lookup) took about a third of a one-tree sim27 JC call."""
        model = self.model
        if any(value.requires_grad for value in model.parameters.values()):
            return None
        key = (id(model), model.base, model.n_categories,
               tuple((name, tuple(value.reshape(-1).tolist()))
                     for name, value in model.parameters.items()))
        if key != self._fixed_key:
            substitution, site_rates = model.substitution, model.site_rates
            eigenvalues, products = compact_spectrum(
                *substitution.eigen_products(torch.float64, self.device))
            self._fixed_parts = (
                site_rates.rates(torch.float64, self.device), eigenvalues, products,
                substitution.frequencies.to(self.dtype),
                site_rates.pinv.to(dtype=torch.float64, device=self.device),
                site_rates.weights(self.dtype), substitution.is_f81)
            self._fixed_key = key
        return self._fixed_parts

    def _site_log_likelihoods(self, batch: TopologyBatch, lengths: torch.Tensor,
                              rescale: bool) -> torch.Tensor:
        substitution, site_rates = self.model.substitution, self.model.site_rates
        matrices, frequencies = self._matrices(lengths, substitution, site_rates)
        pinv = site_rates.pinv.to(dtype=torch.float64, device=self.device)  # see above
        differentiable = torch.is_grad_enabled() and (
            matrices.requires_grad or frequencies.requires_grad or pinv.requires_grad)
        if not differentiable and cpu_kernel.supports_device(self.device, self.dtype):
            tips, invariant, codes = self._cpu_planes()
            return cpu_kernel.evaluate(cpu_kernel.node_program(batch), matrices, frequencies,
                                       pinv, tips, site_rates.weights(self.dtype), self.weights,
                                       invariant, rescale, sites=True, f81=substitution.is_f81,
                                       codes=codes)[1]
        site, log_scale = prune(self._schedule(batch), matrices, frequencies, self.tip_codes,
                                self.code_table, rescale)
        weights = site_rates.weights(self.dtype, self.device)
        mixed = site.transpose(-1, -2) @ weights  # [B, S, P]
        if not site_rates.has_invariant:
            return mixed.log() + log_scale
        variable = (mixed * (1 - pinv)).log() + log_scale
        invariant = (pinv * self.constant_states @ frequencies).log()
        both = torch.logaddexp(variable[..., self.constant_patterns], invariant)
        return variable.index_copy(-1, self.constant_patterns, both)

    def _cpu_planes(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The C kernel's tip and invariant-site planes and its tip codes, built on first use."""
        if self._cpu_tips is None:
            tips = cpu_kernel.tip_planes(self.tip_codes, self.code_table)
            invariant = cpu_kernel.invariant_planes(self.constant, tips.shape[-1], self.dtype)
            self._cpu_tips = tips, invariant, cpu_kernel.tip_code_rows(self.tip_codes)
        return self._cpu_tips

    def _schedule(self, batch: TopologyBatch):
        key = ("schedule", self.device)
        if key not in batch.cache:
            batch.cache[key] = build_schedule(batch).to(self.device)
        return batch.cache[key]


def _invalid_to_minus_inf(value: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``value`` ``[B, S, ...]`` with -inf where a sample's lengths ``[B, S, n_edges]`` are
    not all in [0, inf): a negative length makes "probabilities" outside [0, 1] whose
    products can still look like a likelihood."""
    low, high = torch.aminmax(lengths.detach())  # NaN propagates; one sync on the fast path
    if float(low) >= 0 and float(high) < math.inf:
        return value
    valid = ((lengths >= 0) & (lengths < math.inf)).all(-1)
    valid = valid.reshape(valid.shape + (1,) * (value.dim() - valid.dim()))
    return torch.where(valid, value, torch.full((), -math.inf, dtype=value.dtype,
                                                device=value.device))
