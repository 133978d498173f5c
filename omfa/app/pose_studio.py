"""The Pose Studio tab, and the pose picker of the try-on tabs.

The studio edits one `PoseState` per session (a `gr.State`): load a preset
from the gallery, turn the body, set a main joint with three sliders (its
axis-angle components in degrees, `omfa.pose.edit.set_joint`), click on the
figure to move a hand or foot there (`drag_limb`, inverse kinematics), or
copy the pose of a person in a photo (`omfa.pose.estimate`; a photo with no
person keeps the pose being edited and says why). Every edit
re-renders the shaded figure, the pose map the model will see (the
studio's `pose_map`: `omfa.pose.condition.pose_condition` of the kind the
loaded model was trained with, enlarged for the screen) and a 3-D view
(`gr.Model3D`). The try-on tabs can then use "The Pose Studio's pose".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from omfa.app.checks import checked_upload
from omfa.app.errors import log_user_error, user_errors
from omfa.app.files import CANVAS_CLASS, FIGURE_HW, AppFiles
from omfa.pose.edit import LIMBS, MAIN_JOINTS, drag_limb, joint_degrees, set_joint
from omfa.pose.render import export_glb
from omfa.studio.context import EXAMPLES_DIR, StudioContext
from omfa.studio.runs import POSE_SOURCES, PoseState

DEFAULT_PRESET = "relaxed_stand"
DEFAULT_JOINT = "left_shoulder"
EFFECTORS: dict[str, str] = {name: name.replace("_", " ").capitalize() for name in LIMBS}
AXES = (
    ("x", "left-right axis: bend forwards / backwards"),
    ("y", "vertical axis: twist"),
    ("z", "front-back axis: sideways"),
)


# -- pure edits: PoseState in, PoseState out ------------------------------------


def preset_state(ctx: StudioContext, name: str) -> PoseState:
    """The studio state of a preset, at its own view."""
    preset = ctx.preset(name)
    return PoseState(preset.pose, preset.yaw_deg, preset.name)


def joint_state(state: PoseState, joint: str, xyz_deg: Sequence[float]) -> PoseState:
    """Set one main joint (axis-angle components in degrees, clamped to its range)."""
    return PoseState(set_joint(state.pose, joint, [float(v) for v in xyz_deg]), state.yaw_deg, state.name)


def yaw_state(state: PoseState, yaw_deg: float) -> PoseState:
    """Look at the same pose from another side (0 front, 90 the body's left, 180 back)."""
    return PoseState(state.pose, float(yaw_deg), state.name)


def drag_state(ctx: StudioContext, state: PoseState, effector: str, xy: Sequence[float]) -> PoseState:
    """Move a hand or foot to pixel `xy` (x right, y down) of the studio figure (FIGURE_HW)."""
    pose = drag_limb(state.pose, effector, xy, FIGURE_HW, state.yaw_deg, body=ctx.body)
    return PoseState(pose, state.yaw_deg, state.name)


def photo_state(ctx: StudioContext, photo: Any) -> PoseState:
    """The pose of the one person in a photo, seen as in the photo."""
    return PoseState(ctx.photo_pose(photo), 0.0, "from a photo")


# -- widgets --------------------------------------------------------------------


@dataclass(frozen=True)
class PosePicker:
    """The target pose widgets of a try-on tab, in the order the run handlers take them."""

    source: gr.Radio
    preset: gr.Dropdown
    turn: gr.Slider

    @property
    def inputs(self) -> list[gr.components.Component]:
        return [self.source, self.preset, self.turn]


def preset_gallery(ctx: StudioContext, label: str, columns: int = 4) -> gr.Gallery:
    """Shaded thumbnails of every preset, captioned with its name."""
    items = [(ctx.thumbnail(name), preset.label) for name, preset in ctx.presets.items()]
    return gr.Gallery(
        items,
        label=label,
        columns=columns,
        height=300,
        allow_preview=False,
        object_fit="contain",
        interactive=False,
        buttons=[],
    )


def preset_choices(ctx: StudioContext) -> list[tuple[str, str]]:
    return [(preset.label, name) for name, preset in ctx.presets.items()]


def pose_picker(ctx: StudioContext) -> PosePicker:
    """Radio (portrait / preset / studio), preset dropdown fed by a thumbnail gallery, view turn."""
    source = gr.Radio([(label, value) for value, label in POSE_SOURCES.items()], value="preset", label="Target pose")
    preset = gr.Dropdown(preset_choices(ctx), value=DEFAULT_PRESET, label="Preset")
    with gr.Accordion("Preset gallery", open=False):
        gallery = preset_gallery(ctx, "Click a pose")
    turn = gr.Slider(-180, 180, value=0, step=15, label="Turn the view (degrees; 90 shows the left side)")
    names = list(ctx.presets)

    def pick(evt: gr.SelectData) -> tuple[str, str]:
        return names[evt.index], "preset"

    gallery.select(pick, None, [preset, source], api_visibility="private", queue=False)
    return PosePicker(source, preset, turn)


def build_pose_studio(ctx: StudioContext, files: AppFiles, state: gr.State) -> None:
    """The Pose Studio's widgets and events, inside the current tab. `state` holds the PoseState;
    its images and 3-D views are served from `files`."""
    initial: PoseState = state.value
    names = list(ctx.presets)

    def views(current: PoseState) -> tuple[str, str, str]:
        """Paths of the shaded figure, the pose map (at the model's size) and the .glb of a state."""
        mesh = ctx.mesh_body.posed(current.pose)
        return (
            files.images.png(ctx.figure(current.pose, current.yaw_deg, FIGURE_HW)),
            files.images.png(ctx.pose_map(current.pose, current.yaw_deg)),
            files.models.write(export_glb(mesh)),
        )

    figure0, map0, glb0 = views(initial)  # every session starts from the same pose
    bounds0, degrees0 = MAIN_JOINTS[DEFAULT_JOINT].bounds(), joint_degrees(initial.pose, DEFAULT_JOINT)
    with gr.Row():
        with gr.Column(scale=1):
            gallery = preset_gallery(ctx, "Presets: click one to start from it", columns=3)
            preset = gr.Dropdown(preset_choices(ctx), value=initial.name, label="Preset", elem_id="pose_studio_preset")
            photo = checked_upload(ctx, "Pose from a photo (one person)", "pose_studio_photo", "pose", height=220)
            from_photo = gr.Button("Copy the pose from the photo")
            gr.Examples(
                [[str(EXAMPLES_DIR / "portrait.png")], [str(EXAMPLES_DIR / "astronaut.png")]],
                inputs=[photo],
                label="Example photos",
                cache_examples=False,
            )
        with gr.Column(scale=1):
            figure = gr.Image(
                figure0,
                label="Figure: pick a hand or foot below, then click where it should go",
                interactive=False,
                buttons=[],
                elem_id="pose_studio_figure",
            )
            effector = gr.Radio(
                [(label, name) for name, label in EFFECTORS.items()], value="left_hand", label="Move with a click"
            )
            yaw = gr.Slider(
                -180,
                180,
                value=initial.yaw_deg,
                step=5,
                label="Body yaw (degrees; 90 shows the left side, 180 the back)",
            )
        with gr.Column(scale=1):
            model3d = gr.Model3D(
                glb0, label="3-D view (drag to orbit)", height=300, clear_color=(0.95, 0.95, 0.95, 1.0)
            )
            joint = gr.Dropdown(
                [(name.replace("_", " "), name) for name in MAIN_JOINTS], value=DEFAULT_JOINT, label="Joint"
            )
            sliders = [
                gr.Slider(float(lo), float(hi), value=round(v, 1), step=1, label=f"{axis}: {hint}")
                for (axis, hint), (lo, hi), v in zip(AXES, bounds0, degrees0)
            ]
            pose_map = gr.Image(
                map0, label="Pose map (what the model sees)", interactive=False, buttons=[], elem_classes=[CANVAS_CLASS]
            )
            info = gr.Markdown(describe(initial), label="Pose", elem_id="pose_studio_info")
    outputs = [state, figure, pose_map, model3d, yaw, *sliders, info]

    def show(current: PoseState, joint_name: str, note: str = "") -> tuple:
        bounds, values = MAIN_JOINTS[joint_name].bounds(), joint_degrees(current.pose, joint_name)
        updates = [
            gr.update(minimum=float(lo), maximum=float(hi), value=round(v, 1)) for (lo, hi), v in zip(bounds, values)
        ]
        return (current, *views(current), current.yaw_deg, *updates, describe(current, note))

    def on_preset(name: str | None, joint_name: str) -> tuple:
        if not name:  # the box was emptied by a copied pose: nothing to load
            return tuple(gr.skip() for _ in outputs)
        return show(preset_state(ctx, name), joint_name)

    def on_joint(current: PoseState, joint_name: str, x: float, y: float, z: float) -> tuple:
        return show(joint_state(current, joint_name, (x, y, z)), joint_name)

    def on_yaw(current: PoseState, joint_name: str, yaw_deg: float) -> tuple:
        return show(yaw_state(current, yaw_deg), joint_name)

    def on_drag(current: PoseState, joint_name: str, which: str, evt: gr.SelectData) -> tuple:
        x, y = evt.index  # the clicked pixel of the figure image
        moved = drag_state(ctx, current, which, (x + 0.5, y + 0.5))
        return show(moved, joint_name, f"Moved the {EFFECTORS[which].lower()} to pixel ({x}, {y}).")

    def on_photo(current: PoseState, image: Any, joint_name: str) -> tuple:
        """The photo's pose, and the preset box emptied (the pose is no longer that preset's). A photo
        without a person keeps the current pose and every view of it, and says what was wrong."""
        try:
            copied = photo_state(ctx, image)
        except ValueError as error:
            message = log_user_error(error, "pose_from_photo")
            gr.Warning(message)
            kept = [gr.skip()] * (len(outputs) - 1)
            return (*kept, describe(current, f"Could not copy a pose: {message}"), gr.skip())
        return (*show(copied, joint_name), None)

    def on_pick(evt: gr.SelectData) -> str:
        return names[evt.index]

    pose_events: dict[str, Any] = {"concurrency_id": "pose", "concurrency_limit": 4}
    gallery.select(on_pick, None, preset, api_visibility="private", queue=False)
    preset.change(user_errors(on_preset), [preset, joint], outputs, api_name="pose_preset", **pose_events)
    joint.change(user_errors(show), [state, joint], outputs, api_visibility="private", **pose_events)
    for slider in sliders:
        slider.release(user_errors(on_joint), [state, joint, *sliders], outputs, api_name="pose_joint", **pose_events)
    yaw.release(user_errors(on_yaw), [state, joint, yaw], outputs, api_name="pose_yaw", **pose_events)
    figure.select(user_errors(on_drag), [state, joint, effector], outputs, api_visibility="private", **pose_events)
    from_photo.click(on_photo, [state, photo, joint], [*outputs, preset], api_name="pose_from_photo", **pose_events)


def describe(state: PoseState, note: str = "") -> str:
    """One line about the studio's pose."""
    name = state.name.replace("_", " ").capitalize() or "Edited pose"
    return f"**{name}**, seen from {state.yaw_deg:g} degrees. {note}".strip()
