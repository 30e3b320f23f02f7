"""Figures of the evaluation report (matplotlib with the Agg backend, imported only when a figure is drawn).

Every function takes plain arrays/dicts, draws one figure and saves it as a PNG at ``path``. Display conventions:
images in mm with equal aspect, radiological orientation (the patient's right on the left of the image), superior
up in coronal views; one colour scale per parameter, shared by all methods, with its units on the colour bar.
"""

from __future__ import annotations

import numpy as np

from jaxkin.kinetics import UNITS

#: Organs outlined on the parametric images (as in the paper's Fig. 4: liver, spleen, kidney).
CONTOUR_ORGANS = {"liver": "white", "spleen": "cyan", "kidneys": "magenta", "lesion": "yellow"}


def unit_label(param: str) -> str:
    """The display unit of a parameter, from :data:`jaxkin.kinetics.UNITS`: ``cm3`` as ``cm³``, ``1`` as
    ``unitless``; ``""`` for a name without a unit there."""
    unit = UNITS.get(param, "")
    return "unitless" if unit == "1" else unit.replace("cm3", "cm³")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _plt().close(fig)


def organ_bars(stats: dict, organs: list[str], params: list[str], path) -> None:
    """Fig. 2 style: organ means ± SD of each parameter, one bar per method.

    ``stats``: ``{method: {organ: {param: (mean, sd, n)}}}`` (put the ground truth first if present).
    """
    plt = _plt()
    methods = list(stats)
    fig, axes = plt.subplots(len(params), 1, figsize=(max(8, 0.9 * len(organs) * max(len(methods), 2) / 2 + 3),
                                                       2.6 * len(params)), squeeze=False)
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(organs))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row, param in enumerate(params):
        ax = axes[row, 0]
        for j, method in enumerate(methods):
            means = [stats[method].get(o, {}).get(param, (np.nan, np.nan, 0))[0] for o in organs]
            sds = [stats[method].get(o, {}).get(param, (np.nan, np.nan, 0))[1] for o in organs]
            color = "0.35" if method == "truth" else colors[(j - ("truth" in methods)) % len(colors)]
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, means, width, yerr=sds, capsize=2, label=method,
                   color=color, edgecolor="none")
        ax.set_ylabel(f"{param} ({unit_label(param)})")
        ax.set_xticks(x)
        ax.set_xticklabels(organs if row == len(params) - 1 else [""] * len(organs), rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(ncol=min(len(methods), 5), fontsize=8, loc="upper left", bbox_to_anchor=(0, 1.35))
    axes[0, 0].set_title("Organ mean ± SD over voxels", pad=30)
    _save(fig, path)


def slice_cosine(slice_cs: dict, z_mm: np.ndarray, regions: dict, path, subject: str = "") -> None:
    """Fig. 3a style: the mean cosine similarity of each axial slice, one line per method, along z (mm).

    ``slice_cs``: ``{method: [Z]}``; ``regions``: ``{name: bool [Z]}`` slices shaded as that region.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    shades = {"lungs": "tab:blue", "lungs + heart": "tab:red", "liver": "tab:green"}
    step = float(np.median(np.diff(z_mm))) if len(z_mm) > 1 else 1.0
    for name, on in regions.items():
        for z in np.asarray(z_mm)[np.asarray(on, bool)]:
            ax.axvspan(z - step / 2, z + step / 2, color=shades.get(name, "0.8"), alpha=0.12, lw=0)
        ax.plot([], [], color=shades.get(name, "0.8"), alpha=0.3, lw=8, label=f"{name} slices")
    for method, cs in slice_cs.items():
        ax.plot(z_mm, cs, marker="o", ms=3, label=method)
    ax.set_xlabel("axial position z (mm, inferior → superior)")
    ax.set_ylabel("cosine similarity (mean over slice)")
    ax.set_title(f"TAC cosine similarity per slice {subject}".strip())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    _save(fig, path)


def _empty_panel(ax, ext) -> None:
    """A grey panel of the image's size for a parameter that a method does not estimate."""
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_aspect("equal")
    ax.set_facecolor("0.9")
    ax.text(0.5, 0.5, "not\nestimated", ha="center", va="center", transform=ax.transAxes, fontsize=8)


def _colorbar(fig, image, axes, label: str) -> None:
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(image, ax=axes, location="bottom", shrink=0.85, label=label)
    bar.locator = MaxNLocator(nbins=4)
    bar.update_ticks()


def _slice(volume, view: str, index: int):
    return volume[:, index, :] if view == "coronal" else volume[:, :, index]


def _extent(shape, view: str, voxel_mm, index: int):
    dx, dy, dz = voxel_mm
    if view == "coronal":
        return (0, shape[0] * dx, 0, shape[2] * dz)
    return (0, shape[0] * dx, 0, shape[1] * dy)


def parametric_images(maps: dict, params: list[str], labels, names: dict, voxel_mm, view: str, index: int, path,
                      title: str = "", limits: dict | None = None) -> None:
    """Fig. 3b-e / Fig. 4 style: a grid of parametric images (rows: methods, columns: parameters) of one coronal
    (``index`` = y) or axial (``index`` = z) slice, with organ contours and one colour bar per parameter.

    ``maps``: ``{method: {param: [X, Y, Z]}}``; a method without a parameter leaves its panel empty.
    ``limits``: ``{param: (vmin, vmax)}`` (default: 0 to the 99th percentile over the slices shown).
    """
    plt = _plt()
    methods = list(maps)
    shape = np.asarray(labels).shape
    lab = _slice(np.asarray(labels), view, index).T
    ext = _extent(shape, view, voxel_mm, index)
    fig, axes = plt.subplots(len(methods), len(params), figsize=(2.7 * len(params) + 0.5, 2.9 * len(methods) + 0.4),
                             squeeze=False, constrained_layout=True)
    for col, param in enumerate(params):
        if limits and param in limits:
            vmin, vmax = limits[param]
        else:
            shown = [_slice(np.asarray(m[param]), view, index) for m in maps.values() if param in m]
            vals = np.concatenate([s[np.isfinite(s)].ravel() for s in shown]) if shown else np.zeros(1)
            vmin, vmax = 0.0, float(np.percentile(vals, 99)) if vals.size else 1.0
            vmax = vmax if vmax > vmin else vmin + 1e-6
        image = None
        for row, method in enumerate(methods):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if param not in maps[method]:
                _empty_panel(ax, ext)
            else:
                image = ax.imshow(_slice(np.asarray(maps[method][param]), view, index).T, origin="lower", extent=ext,
                                  cmap="inferno", vmin=vmin, vmax=vmax, interpolation="nearest")
                for organ, color in CONTOUR_ORGANS.items():
                    idx = [i for i, n in names.items() if n == organ]
                    if idx and np.any(lab == idx[0]):
                        ax.contour((lab == idx[0]).astype(float), levels=[0.5], colors=color, linewidths=0.8,
                                   extent=ext, origin="lower")
            ax.invert_xaxis()  # radiological: patient's right on the left
            if col == 0:
                ax.set_ylabel(method, fontsize=10)
            if row == 0:
                ax.set_title(param, fontsize=11)
        if image is not None:
            _colorbar(fig, image, axes[:, col], unit_label(param))
    legend = ", ".join(f"{o} ({c})" for o, c in CONTOUR_ORGANS.items() if o in names.values())
    fig.suptitle(f"{title}\n{view} slice {index}; R on the left; contours: {legend}".strip(), fontsize=10)
    _save(fig, path)


def error_maps(errors: dict, params: list[str], voxel_mm, view: str, index: int, path, title: str = "") -> None:
    """Estimate minus truth images (rows: methods, columns: parameters) with a symmetric diverging colour scale."""
    plt = _plt()
    methods = list(errors)
    first = next(iter(next(iter(errors.values())).values()))
    shape = np.asarray(first).shape
    ext = _extent(shape, view, voxel_mm, index)
    fig, axes = plt.subplots(len(methods), len(params), figsize=(2.7 * len(params) + 0.5, 2.9 * len(methods) + 0.4),
                             squeeze=False, constrained_layout=True)
    for col, param in enumerate(params):
        shown = [_slice(np.asarray(e[param]), view, index) for e in errors.values() if param in e]
        vals = np.concatenate([np.abs(s[np.isfinite(s)]).ravel() for s in shown]) if shown else np.zeros(1)
        lim = float(np.percentile(vals, 99)) if vals.size else 1.0
        lim = lim if lim > 0 else 1e-6
        image = None
        for row, method in enumerate(methods):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if param in errors[method]:
                ax.set_facecolor("0.8")  # outside the evaluated voxels (NaN)
                image = ax.imshow(_slice(np.asarray(errors[method][param]), view, index).T, origin="lower", extent=ext,
                                  cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            else:
                _empty_panel(ax, ext)
            ax.invert_xaxis()
            if col == 0:
                ax.set_ylabel(method, fontsize=10)
            if row == 0:
                ax.set_title(f"{param} error", fontsize=11)
        if image is not None:
            _colorbar(fig, image, axes[:, col], f"estimate − truth\n({unit_label(param)})")
    fig.suptitle(f"{title}\n{view} slice {index}; R on the left; red = overestimate, grey = not evaluated".strip(),
                 fontsize=10)
    _save(fig, path)


def tac_fits(times_min, samples: dict, path, subject: str = "") -> None:
    """Measured TAC and each method's model TAC at one voxel per organ.

    ``times_min [F]`` frame mid times; ``samples``: ``{organ: {"measured": [F], method: [F], ...}}`` (kBq/ml).
    """
    plt = _plt()
    organs = list(samples)
    cols = min(3, max(len(organs), 1))
    rows = -(-len(organs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, constrained_layout=True)
    for k, organ in enumerate(organs):
        ax = axes[k // cols, k % cols]
        for name, tac in samples[organ].items():
            if name == "measured":
                ax.plot(times_min, tac, "k.", ms=4, label="measured")
            else:
                ax.plot(times_min, tac, lw=1.3, label=name)
        ax.set_xscale("symlog", linthresh=2.0)
        ax.set_title(organ)
        ax.set_xlabel("time (min)")
        ax.set_ylabel("activity (kBq/mL)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for k in range(len(organs), rows * cols):
        axes[k // cols, k % cols].axis("off")
    fig.suptitle(f"Sample voxel TACs and model fits {subject}".strip())
    _save(fig, path)
