"""Draw the README's picture: where the last token's sensitivity lies, beside the proxies.

SmolLM2-135M, the counting prompt at 64 tokens: ``osl.trace`` measures the sensitivity of
y_n to every input token with full and with frozen attention (Hutchinson, 32 probes) and
computes every path proxy; ``FlowResult.plot_profile`` draws them as shares of their
totals (measurements solid, proxies dashed).

Usage::

    .venv/bin/python scripts/readme_figure.py --out docs/overview.png
"""

import argparse
from pathlib import Path

import matplotlib

import oversquash_lens as osl
from oversquash_lens.reporting._plan import prompt_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/overview.png"))
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    matplotlib.use("Agg")
    model = osl.load_model("smollm2-135m")
    tokens = prompt_tokens(model, "count_ones", args.n)
    flow = osl.trace(model, tokens, probes=32, layers="final")
    print(flow)
    figure = flow.plot_profile()
    figure.axes[0].set_title(
        f"SmolLM2-135M, counting prompt, n = {args.n}: ‖∂y_n/∂x_i‖ and the path proxies"
    )
    osl.render.save_figure(figure, args.out.with_suffix(""), formats=("png",))


if __name__ == "__main__":
    main()
