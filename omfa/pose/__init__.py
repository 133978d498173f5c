"""Everything about pose: presets, posed bodies, rendering, estimation, editing.

Submodules (import the one you need; `render` loads OpenGL, `estimate` loads
mediapipe and torch):

- `body`: `Pose`, `PosedMesh`, `Body` backends (`MannequinBody`, `SMPLXBody`), `load_body`;
- `presets`: named poses from `pose_presets/*.json`;
- `render`: `PoseRenderer` (pose condition maps, thumbnails), `export_glb`;
- `estimate`: a pose from a photograph;
- `edit`: joint sliders, turning and limb dragging for the UI;
- `cli`: the `omfa pose` command.
"""

from omfa.pose.body import JOINT_NAMES, PART_NAMES, Body, Pose, PosedMesh, load_body

__all__ = ["JOINT_NAMES", "PART_NAMES", "Body", "Pose", "PosedMesh", "load_body"]
