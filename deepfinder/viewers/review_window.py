"""The review window (Tk): a picker's picks, one after the other, accepted, rejected or corrected.

The annotation window's linked views and display controls, with a list of the
picks in review order (class by class, lowest score first); the views follow
the selected pick. Keys:
  a or Return         accept the pick and go to the next
  r, Delete           reject the pick and go to the next
  1-9                 change the pick's class (accepted as corrected) and go to the next
  Down / Up, space    next / previous pick; n: next pick not reviewed yet
  Shift + arrows      move the pick by one voxel in x (left, right) or y (up, down)
  Shift + Page Up/Down  move the pick by one voxel in z
  Ctrl+Z              back to not reviewed, at the picker's class and position
  Ctrl+S save, Ctrl+Q save and close.
Mouse: click a pick to select it, drag to move it, right click to reject it.

The review itself is a :class:`deepfinder.core.annotation.Review`; this module
only shows it and forwards keys and clicks.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable

import numpy as np

from ..core.annotation import ACCEPTED, PENDING, REJECTED, ParticleClass, Review, nearest_particle
from ..figures.orthoslices import VIEW_AXES
from .annotation_window import CLICK_TOLERANCE_PX, AnnotationWindow, _typing

ReviewCallback = Callable[[Review, list[ParticleClass]], None]
REJECTED_COLOUR = "#9a9a9a"
STATUS_MARK = {PENDING: " ", ACCEPTED: "+", REJECTED: "x"}


class ReviewWindow(AnnotationWindow):
    """Review ``review``'s picks in ``master``.

    Parameters
    ----------
    master : tk.Tk
        The window to fill.
    tomograms : list of (str, str)
        (tsId, MRC file) of the tomograms the picks are in.
    classes : list of ParticleClass
        The classes of the picks (class ids are positions + 1).
    review : Review
        The picks and their review so far; edited in place.
    voxel_size : float
        Å per voxel of the tomograms.
    on_change : callable
        Called with (review, classes) after every decision, to save as we go.
    on_save : callable
        Called when the user saves (button, Ctrl+S).
    """

    def __init__(
        self,
        master: tk.Tk,
        tomograms: list[tuple[str, str]],
        classes: list[ParticleClass],
        review: Review,
        voxel_size: float,
        on_change: ReviewCallback,
        on_save: Callable[[], None],
    ):
        if not len(review):
            raise ValueError("No picks to review.")
        known = {tsId for tsId, _ in tomograms}
        missing = sorted(set(review.picks.tomo) - known)
        if missing:
            raise ValueError(f"Picks of tomograms not given: {', '.join(missing[:5])}.")
        if review.class_id.max() > len(classes):
            raise ValueError(f"Picks of class {review.class_id.max()} but {len(classes)} classes given.")
        self.review = review
        self.position = 0
        self.on_review_change = on_change
        self._tomogram_index = {tsId: i for i, (tsId, _) in enumerate(tomograms)}
        super().__init__(master, tomograms, classes, {}, voxel_size, lambda *_: None, on_save)
        first = review.next_pending(len(review) - 1)
        self.select(first if first is not None else 0)

    # ----------------------------------------------------------------- layout
    def _build(self) -> None:
        super()._build()
        self.master.title("DeepFinder review")
        frame = tk.LabelFrame(self.panel, text="Picks (class, lowest score first)")
        frame.pack(fill="both", pady=(8, 0))
        self.pick_list = tk.Listbox(frame, height=8, width=44, exportselection=False, font="TkFixedFont")
        scroll = tk.Scrollbar(frame, command=self.pick_list.yview)
        self.pick_list.configure(yscrollcommand=scroll.set)
        self.pick_list.pack(side="left", fill="both", expand=True)
        scroll.pack(side="right", fill="y")
        for position in range(len(self.review)):
            self.pick_list.insert("end", self._pick_line(position))
        self.pick_list.bind("<<ListboxSelect>>", self._on_pick_selected)
        keys = {
            "a": self.accept,
            "<Return>": self.accept,
            "r": self.reject,
            "<space>": lambda: self.select(self.position + 1),
            "<Down>": lambda: self.select(self.position + 1),
            "<Up>": lambda: self.select(self.position - 1),
            "n": self.select_next_pending,
            "<Shift-Left>": lambda: self.nudge(0, -1),
            "<Shift-Right>": lambda: self.nudge(0, 1),
            "<Shift-Up>": lambda: self.nudge(1, 1),
            "<Shift-Down>": lambda: self.nudge(1, -1),
            "<Shift-Prior>": lambda: self.nudge(2, 1),
            "<Shift-Next>": lambda: self.nudge(2, -1),
        }
        for key, action in keys.items():
            self.master.bind_all(key, lambda e, a=action: _typing(e) or a())
        # In the list, its own Up / Down would move the selection a second time.
        for key in ("<Up>", "<Down>", "<space>"):
            self.pick_list.bind(key, lambda e, a=keys[key]: (a(), "break")[1])

    def _pick_line(self, position: int) -> str:
        index = self.review.order[position]
        particle_class = self.classes[self.review.class_id[index] - 1]
        score = self.review.picks.score[index]
        x, y, z = np.round(self.review.xyz[index]).astype(int)
        return (
            f"{STATUS_MARK[self.review.status[index]]} {particle_class.name[:12]:12} {score:7.3f} "
            f"{self.review.picks.tomo[index][:10]:10} {x},{y},{z}"
        )

    # ----------------------------------------------------------------- selection
    def select(self, position: int) -> None:
        """Select the pick at ``position`` in the review order and move the views to it."""
        if not 0 <= position < len(self.review):
            return
        self.position = position
        index = int(self.review.order[position])
        self.show_tomogram(self._tomogram_index[self.review.picks.tomo[index]])
        self.selected = index
        self.cursor = np.clip(np.round(self.review.xyz[index]).astype(int), 0, np.array(self.shape[::-1]) - 1)
        self.render()

    def select_next_pending(self) -> None:
        position = self.review.next_pending(self.position)
        if position is None:
            self.status.set("Every pick is reviewed: Ctrl+Q saves and closes.")
        else:
            self.select(position)

    def _on_pick_selected(self, _event) -> None:
        selection = self.pick_list.curselection()
        if selection and selection[0] != self.position:
            self.select(selection[0])

    # ----------------------------------------------------------------- decisions
    def accept(self) -> None:
        self._decide(self.review.accept)

    def reject(self) -> None:
        self._decide(self.review.reject)

    def delete_selected(self) -> None:
        self.reject()

    def set_current_class(self, class_id: int) -> None:
        if 1 <= class_id <= len(self.classes):
            self.current_class = class_id
            self._decide(lambda index: self.review.set_class(index, class_id))

    def undo(self) -> None:
        if self.selected is not None:
            self.review.reset(self.selected)
            self._changed()
            self.render()

    def nudge(self, axis: int, voxels: int) -> None:
        """Move the selected pick by ``voxels`` along x, y or z (``axis`` 0, 1, 2)."""
        if self.selected is None:
            return
        xyz = self.review.xyz[self.selected].copy()
        xyz[axis] = np.clip(xyz[axis] + voxels, 0, self.shape[2 - axis] - 1)
        self.review.move(self.selected, xyz)
        self.cursor[axis] = int(round(xyz[axis]))
        self._changed()
        self.render()

    def _decide(self, decision: Callable[[int], None]) -> None:
        if self.selected is None:
            return
        decision(self.selected)
        self._changed()
        if self.position + 1 < len(self.review):
            self.select(self.position + 1)
        else:
            self.render()

    def _changed(self) -> None:
        self.pick_list.delete(self.position)
        self.pick_list.insert(self.position, self._pick_line(self.position))
        self.on_review_change(self.review, list(self.classes))

    # ----------------------------------------------------------------- drawing
    def render(self) -> None:
        super().render()
        self.pick_list.selection_clear(0, "end")
        self.pick_list.selection_set(self.position)
        self.pick_list.see(self.position)
        counts = self.review.counts()
        index = int(self.review.order[self.position])
        particle_class = self.classes[self.review.class_id[index] - 1]
        self.status.set(
            f"pick {self.position + 1} / {len(self.review)}: {particle_class.name}, score "
            f"{self.review.picks.score[index]:.3f}, {self.review.status[index]}  |  accepted "
            f"{counts[ACCEPTED]}, rejected {counts[REJECTED]}, to review {counts[PENDING]}  |  "
            "a accept, r reject, 1-9 class, arrows"
        )

    def _class_counts(self) -> dict[int, int]:
        """Picks per class, the rejected ones left out."""
        ids, counts = np.unique(self.review.class_id[self.review.status != REJECTED], return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}

    def _shown_particles(self) -> np.ndarray:
        return self.review.of_tomogram(self.tomograms[self.tomo_index][0])

    def _class_ids(self) -> np.ndarray:
        return self.review.class_id

    def _outline(self, index: int, particle_class: ParticleClass, selected: bool) -> dict:
        status = self.review.status[index]
        return {
            "outline": REJECTED_COLOUR if status == REJECTED else particle_class.colour,
            "dash": (4, 4) if status == REJECTED else (),
            "width": 3 if selected else {PENDING: 1, ACCEPTED: 2, REJECTED: 1}[status],
        }

    # ----------------------------------------------------------------- mouse
    def _hit(self, view: str, point: np.ndarray) -> int | None:
        shown = self._shown_particles()
        hit = nearest_particle(
            self.review.xyz[shown],
            self.review.class_id[shown],
            point,
            VIEW_AXES[view][2],
            self._radii(),
            min_radius=CLICK_TOLERANCE_PX / self.scale,
        )
        return None if hit is None else int(shown[hit])

    def _press(self, view: str, event) -> None:
        hit = self._hit(view, self._point(view, event))
        if hit is None:
            return
        self.position = int(np.flatnonzero(self.review.order == hit)[0])
        self._start_drag(hit)

    def _positions(self) -> np.ndarray:
        return self.review.xyz

    def _move(self, index: int, xyz: np.ndarray, first_of_drag: bool) -> None:
        self.review.move(index, xyz)

    def _show_particle(self, index: int) -> None:
        self.select(self.position)

    def _delete_at(self, view: str, event) -> None:
        hit = self._hit(view, self._point(view, event))
        if hit is not None:
            self.position = int(np.flatnonzero(self.review.order == hit)[0])
            self.selected = hit
            self.reject()


def review_picks(
    tomograms: list[tuple[str, str]],
    classes: list[ParticleClass],
    review: Review,
    voxel_size: float,
    on_change: ReviewCallback,
    on_save: Callable[[], None],
) -> None:
    """Open the review window and return when the user closes it (``review`` is edited in place)."""
    root = tk.Tk()
    ReviewWindow(root, tomograms, classes, review, voxel_size, on_change, on_save)
    root.mainloop()
