"""Report node: shows what the last sampling run with a PreciseCache model did."""
from __future__ import annotations

import json

from comfy_api.latest import io, ui

from .hooks import get_setup
from .inputs import CATEGORY
from .report_image import report_image_tensor


class ReportNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PreciseCacheReport",
            display_name="PreciseCache Report",
            category=CATEGORY,
            description="Shows the report of the latest sampling run made with this PreciseCache model: steps "
                        "skipped, blocks reused, work saved (counted in forwards), wall time, cache memory, and a plot per step.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The model coming out of LFCache / BlockCache (the one the "
                                                "sampler used)."),
                io.Latent.Input("samples", tooltip="The sampler's output: connecting it makes the report run "
                                                   "after sampling. Passed through unchanged."),
            ],
            outputs=[
                io.String.Output(display_name="report", tooltip="The report as text. Connect it to a Preview Any "
                                                                "node to read it in the editor."),
                io.Image.Output(display_name="plot", tooltip="LFD per step, threshold, skipped steps and reused "
                                                             "blocks per step."),
                io.String.Output(display_name="report_json", tooltip="The report as JSON (all counters)."),
                io.Latent.Output(display_name="samples", tooltip="The input samples, unchanged."),
            ],
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        return float("nan")  # always re-run: the report changes with every sampling run

    @classmethod
    def execute(cls, model, samples) -> io.NodeOutput:
        setup = get_setup(model)
        report = setup.reports.latest if setup else None
        if report is None:
            raise ValueError("PreciseCache Report: this model has no PreciseCache run yet. Connect the model "
                             "output of an LFCache or BlockCache node that a sampler used, and that sampler's "
                             "output to 'samples'.")
        text = report.to_text()
        image = report_image_tensor(report)
        return io.NodeOutput(text, image, json.dumps(report.to_dict()), samples, ui=_ui(text, image, cls))


def _ui(text: str, image, node_cls) -> dict:
    """UI payload: the plot (shown on the node by the editor) and the text (kept in /history; the
    editor does not draw text on this node, hence the Preview Any node in the shipped workflows)."""
    return {**ui.PreviewImage(image, cls=node_cls).as_dict(), **ui.PreviewText(text).as_dict()}
