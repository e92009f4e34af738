"""Every qualitative and quantitative claim of the paper and its rebuttal that the book checks, each with the
words it was reported in, where (figure or section) and the criterion that decides.

:data:`FINDINGS` is the list the book is held to: the findings table has one row per entry, and a test checks
that every entry gets a row with a computed verdict. A verdict is one of :data:`VERDICTS`.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace

from ...engine.config import DEFAULT_CERT

__all__ = ["Finding", "Verdict", "FINDINGS", "VERDICTS"]

#: "cannot test offline": the claim is about pretrained weights or a model that cannot be installed without a network
VERDICTS = ("agrees", "disagrees", "inconclusive", "not tested", "cannot test offline")


@dataclass(frozen=True)
class Finding:
    """One claim: ``paper`` quotes or closely paraphrases what was reported, ``source`` says where (the paper or
    the rebuttal, and the figure or section), ``criterion`` how a run decides it. The chapter that checks it lists
    its id (:mod:`certattr.book.chapters`)."""

    id: str
    title: str
    paper: str
    source: str
    criterion: str
    layers: tuple = ("input", "final")  #: the layers the claim is about: a row names only their exclusions
    #: the methods (titles) the claim is about when it compares them with no other method: a row names only their
    #: exclusions (empty: every method counts, e.g. a ranking against all others)
    methods: tuple = ()


@dataclass
class Verdict:
    finding: Finding
    verdict: str  #: one of VERDICTS
    measured: str  #: what the run measured, in words with its numbers
    why: str  #: why the verdict came out so, from the same numbers
    statistics: dict = field(default_factory=dict)
    excluded: str = ""  #: which methods or settings were not counted as evidence, and why

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} is not allowed: give one of {', '.join(VERDICTS)}")
        self.excluded = _for_methods(_for_layers(self.excluded, self.finding.layers), self.finding.methods)

    def to_dict(self) -> dict:
        return {**asdict(self.finding), "verdict": self.verdict, "measured": self.measured, "why": self.why,
                "excluded": self.excluded, "statistics": self.statistics}


_PREFIX = "Not counted as evidence: "


def _for_layers(excluded: str, layers) -> str:
    """The "Not counted as evidence: ..." sentence with only the (method, layer) pairs of ``layers``."""
    if not excluded.startswith(_PREFIX) or set(layers) >= {"input", "final"}:
        return excluded
    body, dot, rest = excluded[len(_PREFIX):].partition(". Not ranked")
    items = re.split(r"; (?=[A-Z][\w+\-]* at the (?:Input|Final) layer)", body.rstrip("."))
    keep = [i for i in items if any(f" at the {layer.capitalize()} layer" in i.split(" (")[0] for layer in layers)]
    tail = ("Not ranked" + rest) if dot else ""
    return " ".join(filter(None, [(_PREFIX + "; ".join(keep) + ".") if keep else "", tail]))


def _for_methods(excluded: str, methods) -> str:
    """The "Not counted as evidence: ..." sentence with only the pairs of ``methods`` (all when empty)."""
    if not methods or not excluded.startswith(_PREFIX):
        return excluded
    body, dot, rest = excluded[len(_PREFIX):].partition(". Not ranked")
    items = re.split(r"; (?=[A-Z][\w+\-]* at the (?:Input|Final) layer)", body.rstrip("."))
    keep = [i for i in items if i.split(" at the ")[0] in methods]
    tail = ("Not ranked" + rest) if dot else ""
    return " ".join(filter(None, [(_PREFIX + "; ".join(keep) + ".") if keep else "", tail]))


_TREND = ("Paired over (model, image, method, layer) units certified at both the smallest and the largest {x}: the "
          "difference of certified robustness (1 - abstain) at the largest K, smallest {x} minus largest {x}. The 95% "
          "bootstrap interval of the mean difference resamples images (each with all its units); agrees if it lies "
          "above 0, disagrees if below 0, otherwise inconclusive; the sign test over the images' mean differences "
          "is reported beside it.")
def _lead(*, measure, layer, cond, empty, named, units) -> str:
    """The criterion of a ranking claim; a measure without an empty rule (``empty=""``) leaves the rule's clause
    out instead of printing it without its condition."""
    rule = f"at each {cond} a method{empty} is not ranked, and " if empty else ""
    return (f"{measure} per method at the {layer} layer, on the models on which the named methods ran; margin = "
            f"min({named}) - max(every other method) at each {cond}, then the mean over the {cond}s; {rule}methods "
            f"with identical certificates count once. The 95% bootstrap interval resamples {units}. Agrees if it "
            f"lies above 0, disagrees if below 0, otherwise inconclusive.")


FINDINGS: dict[str, Finding] = {f.id: f for f in [
    # --- robustness ---------------------------------------------------------------------------------------
    Finding("sigma_trend", "Larger σ gives a larger R and fewer certified pixels",
            "Larger σ gives a larger certified radius R = σ·Φ⁻¹(τ) and fewer certified pixels.", "paper, Sec. 4",
            _TREND.format(x="σ") + " (R grows with σ by its closed form.)"),
    Finding("tau_trend", "Larger τ likewise gives a larger R and fewer certified pixels",
            "A larger τ certifies a larger radius but needs more agreeing samples, so fewer pixels are certified.",
            "paper, Sec. 4",
            f"The same samples certified at τ = {DEFAULT_CERT.tau:g} and at a larger τ (no resampling), "
            + _TREND.format(x="τ")[0].lower() + _TREND.format(x="τ")[1:]),
    Finding("r_trend_every_model", "%certified falls as R grows, on every model",
            "The general trend of reduced certification rates by increasing the certified radius R ... holds across "
            "all five models.", "rebuttal, Figure 1",
            "The σ criterion per model. Agrees if it agrees on every model run and more than one model ran; "
            "disagrees if it disagrees on any; otherwise inconclusive (one model cannot show 'every model'; a model "
            "with fewer than 8 images gets no interval)."),
    Finding("k_trend_every_model", "Fewer pixels are certified important as K decreases, on every model",
            "... as well as reduced certified top K% pixels by decreasing K holds across all five models.",
            "rebuttal, Figure 2",
            "Per model, paired over (image, method, layer) units at the smallest σ: certified-'1' share at the "
            "largest K minus at the smallest K; the interval rule of the σ trend. Agrees if it agrees on every "
            "model and more than one model ran; disagrees if it disagrees on any; otherwise inconclusive (a model "
            "with fewer than 8 images gets no interval)."),
    Finding("gradient_input", "Gradient methods certify almost nothing as important at the Input layer",
            "Grad, GB, IxG and IntGrad certify almost no pixel as important at the Input layer.", "paper, Sec. 5",
            "Per named method: share of the top-K budget certified '1' (certified-'1' pixels / K% of the pixels), "
            "pooled over its (model, image) units, at the smallest σ and the largest K, with a 95% bootstrap interval "
            "resampling images. "
            "'Almost nothing' = below 10% of the budget. Agrees if all four ran and every interval lies below 0.10; "
            "disagrees if any interval lies above 0.10; otherwise inconclusive."),
    Finding("input_robust_leaders", "At the Input layer LRP and RISE are the most robust",
            "Input layer: LRP and RISE exhibit the highest robustness, as they also maintain a relatively high "
            "%certified across all three radii.", "rebuttal, Figure 1",
            _lead(measure="Certified robustness (1 - abstain)", layer="Input", cond="(σ, K) setting",
                         empty="", named="LRP, RISE", units="images")),
    Finding("input_small_k_balance", "At the Input layer LRP and RISE keep certifying as K decreases",
            "They [LRP and RISE] also maintain a balance in certified top K% pixels by decreasing K.",
            "rebuttal, Figure 2",
            _lead(measure="Share of the K budget certified '1' at the smallest K and σ", layer="Input",
                         cond="K", empty="", named="LRP, RISE", units="images")),
    Finding("small_k_detail", "A small K certifies fine detail",
            "At a small K (5%) the certified important pixels are fine features (e.g. eyes), at a large K (50%) "
            "coarse regions.", "paper, Figures 1, 6 and 7",
            "At the Input layer, paired over (model, image, method) units that certify at least one pixel '1' at both "
            "the smallest and the largest K: the log-ratio of the mean size (pixels) of the 4-connected "
            "certified-'1' components, smallest K over largest K. Agrees if its 95% bootstrap interval (resampling "
            "images) lies below 0; disagrees if above 0; inconclusive otherwise."),
    # --- localization -------------------------------------------------------------------------------------
    Finding("gradgb_final", "Grad and GB at the Final layer seem the most robust but localize very poorly",
            "Final layer: Though Grad and GB still seem the most robust on CNNs in Figure 1, they localize very "
            "poorly, this is because they produce grid-like almost constant attributions at the final layer of the "
            "CNN architecture.", "rebuttal, Figures 1 and 3",
            "Three parts, each for Grad and for GB at the Final layer, their constant maps counted as the evidence "
            "they are: (1) almost constant: at least 90% of their certificates flagged as constant maps; (2) the "
            "most robust: certified robustness (mean over K, smallest σ, on the single images) minus that of the "
            "closest other method on the (model, image) units both have, 95% interval resampling images, not below 0; (3) localize very poorly: mean "
            "Certified GridPG at the largest K (an empty certificate scores 0: it localizes nothing), 95% interval "
            "over grid targets, below chance (0.25). Agrees if all three hold for both; disagrees if an interval "
            "lies on the other side of any part; otherwise inconclusive."),
    Finding("input_localization_leaders", "At the Input layer LRP and RISE localize best",
            "LRP and RISE also have the highest Certified GridPG scores on the input layer across all five models.",
            "rebuttal, Figure 3",
            _lead(measure="Certified GridPG (mean over grid targets)", layer="Input", cond="K",
                         empty=" with nothing certified '1' in more than half of the grid targets",
                         named="LRP, RISE", units="grid targets")),
    # --- faithfulness -------------------------------------------------------------------------------------
    Finding("deletion_input_leaders", "At the Input layer LRP and RISE cause the steepest first deletion drop",
            "Input layer: LRP and RISE cause the steepest confidence drop in the first removal step on ResNet-18 "
            "and VGG-11.", "rebuttal, Figure 8",
            _lead(measure="Confidence drop at the first deletion step (1 - p₁/p₀, one minus the faithfulness "
                                 "table's relative probability, not clipped; mean over images)", layer="Input",
                         cond="step", empty=" whose first step removed nothing in more than half of the images",
                         named="LRP, RISE", units="images")),
    Finding("gradcam_least_faithful_input", "GradCam is the least faithful at the Input layer",
            "GradCam is the least faithful on both ResNet-18 and VGG-11, which causes an increase in the confidence "
            "in VGG-11.", "rebuttal, Figure 8",
            "Confidence drop at the first deletion step (1 - p₁/p₀, not clipped; mean over images) per method at the "
            "Input layer; margin = min(every other method) - GradCam, 95% bootstrap interval resampling images; a "
            "method whose first step removed nothing in more than half of the images is not ranked. Agrees if above "
            "0, disagrees if below 0, otherwise inconclusive."),
    Finding("final_flip", "At the Final layer most methods flip the prediction after the first deletion step",
            "At the final layer, most methods cause a prediction flip after the first deletion step.",
            "rebuttal, Figure 8",
            "Per method at the Final layer (methods with identical deletion curves counted once; curves whose first "
            "step removed nothing left out): the share of its images whose top-1 class changes after the first step, "
            "with an exact 95% interval; the method flips if the interval lies above one half, keeps the prediction "
            "if below. Agrees if more than half of the methods flip; disagrees if at least half keep it; otherwise "
            "inconclusive."),
    Finding("localization_faithfulness", "Localization and faithfulness align at the Input layer",
            "There is an alignment between certified localization and faithfulness, as LRP and RISE also have the "
            "highest Certified GridPG scores on the input layer.", "rebuttal, Sec. 2.1",
            "Across the methods counted as evidence at the Input layer (identical methods once, the empty rule for "
            "each measure): Spearman's rank correlation between Certified GridPG (mean over the K at which every "
            "method is ranked) and the first-step confidence drop. Agrees if rho > 0 with a one-sided exact "
            "permutation p < 0.05; disagrees if rho < 0 with the opposite p < 0.05; otherwise inconclusive (at least "
            "4 methods needed)."),
    Finding("gradgb_final_faithful_vgg", "On VGG-11 Grad and GB at the Final layer are faithful but localize at chance",
            "Some methods are faithful, but localize poorly (e.g. GB and Grad at the final layer on VGG-11).",
            "rebuttal, Figures 3 and 8",
            "Needs VGG-11 with its ImageNet weights: deletion faithfulness of Grad and GB at its Final layer above the "
            "median method, with Certified GridPG in the chance band."),
    # --- trade-off ----------------------------------------------------------------------------------------
    Finding("rise_lrp_balance", "RISE and LRP balance robustness, localization and faithfulness best",
            "RISE and LRP balance robustness, localization and faithfulness best.", "paper, abstract and Sec. 5",
            "Balance at each K = geometric mean of certified robustness (mean over images), Certified GridPG (mean "
            "over grid targets; not ranked at a K where more than half are empty) and the first-step confidence drop "
            "(mean over images) at the Input layer; margin = min(RISE, LRP) - max(any other method), the mean over "
            "K. Agrees if its 95% bootstrap interval (images and grid targets resampled independently) lies above "
            "0; disagrees if below 0; otherwise inconclusive."),
    Finding("rise_best_balance", "RISE strikes the best balance at both layers, LRP second",
            "RISE strikes the best balance at both layers. Interestingly, LRP comes second, which outperforms the "
            "rest of backpropagation methods by a big margin.", "rebuttal, Figure 5",
            "Per layer and K, balance = √(certified robustness × Certified GridPG) (the empty rule of the "
            "localization rows); margins RISE - best other and LRP - best non-RISE method, each the mean over K. "
            "Agrees if at both layers both intervals lie above 0; disagrees if either lies below 0 at a layer; "
            "otherwise inconclusive."),
    # --- ViT ----------------------------------------------------------------------------------------------
    Finding("vit_gradient_weak", "Gradient methods are as weak on ViT-B/16 as on CNNs",
            "Gradient-based methods exhibit low robustness on ViT-B/16 comparable to their CNNs performance on both "
            "the input and final layers.", "rebuttal, Figure 1",
            "Needs ViT-B/16 with its ImageNet weights: robustness of the gradient methods on ViT within 0.1 of their "
            "robustness on the CNN at each layer."),
    Finding("vit_rise_robust", "RISE stays highly robust on ViT-B/16",
            "RISE maintains ... high robustness across both architecture types, with the highest at radius R = 0.10 "
            "at the final layer on ViT-B/16.", "rebuttal, Figure 1",
            "Needs ViT-B/16 with its ImageNet weights: RISE the most robust method on ViT at the Final layer."),
    Finding("vit_activation_weak_final", "Activation methods are weak on ViT-B/16 at the Final layer",
            "Activation-based methods perform poorly on the transformer model compared to CNNs on the final layer.",
            "rebuttal, Figure 1",
            "Needs ViT-B/16 with its ImageNet weights: robustness of the activation methods at the Final layer lower "
            "on ViT than on the CNN, interval of the difference below 0."),
]}

#: the claims about one layer only (their rows name only that layer's exclusions)
_ONE_LAYER = {**dict.fromkeys(("gradient_input", "input_robust_leaders", "input_small_k_balance", "small_k_detail",
                               "input_localization_leaders", "deletion_input_leaders", "gradcam_least_faithful_input",
                               "localization_faithfulness", "rise_lrp_balance"), ("input",)),
              **dict.fromkeys(("gradgb_final", "final_flip", "gradgb_final_faithful_vgg", "vit_activation_weak_final"),
                              ("final",))}
#: the claims about named methods alone (not a ranking against the others): their rows name only those methods'
#: exclusions
_ONLY_METHODS = {"gradient_input": ("Grad", "GB", "IxG", "IntGrad")}
FINDINGS = {fid: replace(f, layers=_ONE_LAYER.get(fid, f.layers), methods=_ONLY_METHODS.get(fid, f.methods))
            for fid, f in FINDINGS.items()}
