"""The annotation window (Tk): linked orthoslices, a class list, click to annotate.

Mouse, in any of the three views (XY, XZ, YZ):
  left click on empty space   add a particle of the current class
  left click on a particle    select it (the other views move to it); drag to move it
  right click on a particle   delete it
  wheel                       next / previous slice; Ctrl + wheel zooms
  middle drag                 pan
Keys: 1-9 current class, Delete removes the selected particle, Ctrl+Z undo,
Page Up / Page Down previous / next tomogram, Ctrl+S save, Ctrl+Q save and close.

The particles edited are :class:`deepfinder.core.annotation.Annotation` objects and
the images come from :mod:`deepfinder.figures.orthoslices`; this module only wires
them to Tk widgets and events.
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import colorchooser

import numpy as np
from PIL import Image, ImageTk

from ..core import io
from ..core.annotation import Annotation, ParticleClass
from ..core.particles import ParticleTable
from ..figures.orthoslices import (
    VIEW_AXES,
    canvas_image,
    canvas_sizes,
    default_colour,
    fit_scale,
    from_canvas,
    sampled_mean_std,
    to_canvas,
)

#: Largest area (pixels) the three views take at the start, on a large enough screen.
VIEW_AREA = (900, 760)
#: Room kept for the control panel and the status bar.
PANEL_ROOM = (360, 140)
#: A particle is clickable within this many pixels of its centre however small it is drawn.
CLICK_TOLERANCE_PX = 5
ZOOM_STEP = 1.25
#: Canvas images kept, so that going back to a slice or zoom seen recently costs nothing.
IMAGE_CACHE_SIZE = 48
#: Pixels between the views: XY at (0, 0), YZ at (XY width + gap, 0), XZ at (0, XY height + gap).
VIEW_GAP = 4

ChangeCallback = Callable[[str, ParticleTable, list[ParticleClass]], None]


def view_area(screen_width: int, screen_height: int) -> tuple[int, int]:
    """Pixels the three views may take on a screen of that size."""
    return (min(VIEW_AREA[0], screen_width - PANEL_ROOM[0]), min(VIEW_AREA[1], screen_height - PANEL_ROOM[1]))


class AnnotationWindow:
    """Annotate particles of several tomograms, one at a time, in ``master``.

    Parameters
    ----------
    master : tk.Tk
        The window to fill (its title is set here).
    tomograms : list of (str, str)
        (tsId, MRC file) of each tomogram, in the order they are visited.
    classes : list of ParticleClass
        Classes to start with (at least one); class ids are positions + 1.
    particles : dict
        Existing particles per tsId (voxels), e.g. from a previous sitting.
    voxel_size : float
        Å per voxel of the tomograms, to show and enter radii in Å.
    on_change : callable
        Called with (tsId, particles, classes) after every edit, to save as we go.
    on_save : callable
        Called when the user saves (button, Ctrl+S). Closing the window does
        not call it: the caller does what is needed once the window is closed.
    """

    def __init__(
        self,
        master: tk.Tk,
        tomograms: list[tuple[str, str]],
        classes: list[ParticleClass],
        particles: dict[str, ParticleTable],
        voxel_size: float,
        on_change: ChangeCallback,
        on_save: Callable[[], None],
    ):
        if not tomograms:
            raise ValueError("No tomograms to annotate: give at least one (tsId, file).")
        if not classes:
            raise ValueError("Give at least one particle class to annotate.")
        self.master = master
        self.tomograms = list(tomograms)
        self.classes = [ParticleClass(c.name, c.colour, c.radius_voxels) for c in classes]
        for tsId, table in particles.items():
            if len(table) and table.class_id.max() > len(classes):
                raise ValueError(
                    f"Particles of {tsId} have class {table.class_id.max()} but only "
                    f"{len(classes)} classes are given: give a class for each id."
                )
        self.annotations = {tsId: Annotation(tsId, particles.get(tsId)) for tsId, _ in tomograms}
        self.voxel_size = voxel_size
        self.on_change = on_change
        self.on_save = on_save
        self.current_class = 1
        self.selected: int | None = None
        self._drag: tuple[int, bool] | None = None
        self._pan: tuple[str, int, int] | None = None
        self._photos: dict[str, ImageTk.PhotoImage] = {}
        self._image_cache: dict[tuple, ImageTk.PhotoImage] = {}
        self.tomo_index = -1
        self._build()
        self.show_tomogram(0)

    # ----------------------------------------------------------------- layout
    def _build(self) -> None:
        self.master.title("DeepFinder annotation")
        self.master.protocol("WM_DELETE_WINDOW", self.save_and_close)
        # The views sit at the window's top-left corner, without borders, so a
        # voxel's screen position follows from to_canvas() alone.
        views = tk.Frame(self.master, borderwidth=0, highlightthickness=0, background="#505050")
        views.grid(row=0, column=0, sticky="nw")
        self.canvases = {}
        for view, (row, column) in {"XY": (0, 0), "YZ": (0, 1), "XZ": (1, 0)}.items():
            canvas = tk.Canvas(
                views, background="black", borderwidth=0, highlightthickness=0, cursor="crosshair"
            )
            canvas.grid(
                row=row,
                column=column,
                sticky="nw",
                padx=(0, VIEW_GAP * (column == 0)),
                pady=(0, VIEW_GAP * (row == 0)),
            )
            canvas.create_image(0, 0, anchor="nw", tags="image")
            canvas.create_text(6, 4, anchor="nw", text=view, fill="yellow", tags="name")
            self._bind_view(canvas, view)
            self.canvases[view] = canvas
        panel = self.panel = tk.Frame(self.master, padx=8, pady=4)
        panel.grid(row=0, column=1, sticky="n")
        self._build_tomogram_controls(panel)
        self._build_class_controls(panel)
        self._build_display_controls(panel)
        buttons = tk.Frame(panel)
        buttons.pack(fill="x", pady=(8, 0))
        tk.Button(buttons, text="Undo", command=self.undo).pack(side="left")
        tk.Button(buttons, text="Save", command=self.save).pack(side="left")
        tk.Button(buttons, text="Save and close", command=self.save_and_close).pack(side="left")
        self.status = tk.StringVar()
        tk.Label(self.master, textvariable=self.status, anchor="w").grid(
            row=1, column=0, columnspan=2, sticky="we"
        )
        # Keys typed into the class name and radius fields are text, not commands.
        self.master.bind_all("<Delete>", lambda e: _typing(e) or self.delete_selected())
        self.master.bind_all("<BackSpace>", lambda e: _typing(e) or self.delete_selected())
        self.master.bind_all("<Control-z>", lambda e: self.undo())
        self.master.bind_all("<Control-s>", lambda e: self.save())
        self.master.bind_all("<Control-q>", lambda e: self.save_and_close())
        self.master.bind_all("<Next>", lambda e: self.show_tomogram(self.tomo_index + 1))
        self.master.bind_all("<Prior>", lambda e: self.show_tomogram(self.tomo_index - 1))
        for digit in range(1, 10):
            self.master.bind_all(str(digit), lambda e, c=digit: _typing(e) or self.set_current_class(c))

    def _build_tomogram_controls(self, panel: tk.Frame) -> None:
        frame = tk.LabelFrame(panel, text="Tomogram")
        frame.pack(fill="x")
        self.tomo_label = tk.StringVar()
        tk.Label(frame, textvariable=self.tomo_label).pack(anchor="w")
        tk.Button(frame, text="< previous", command=lambda: self.show_tomogram(self.tomo_index - 1)).pack(
            side="left"
        )
        tk.Button(frame, text="next >", command=lambda: self.show_tomogram(self.tomo_index + 1)).pack(
            side="left"
        )

    def _build_class_controls(self, panel: tk.Frame) -> None:
        frame = tk.LabelFrame(panel, text="Classes (keys 1-9)")
        frame.pack(fill="x", pady=(8, 0))
        self.class_list = tk.Listbox(frame, height=6, exportselection=False, selectbackground="#c8c8c8")
        self.class_list.pack(fill="x")
        self.class_list.bind("<<ListboxSelect>>", self._on_class_selected)
        entries = tk.Frame(frame)
        entries.pack(fill="x")
        tk.Label(entries, text="name").grid(row=0, column=0)
        self.class_name = tk.StringVar()
        tk.Entry(entries, textvariable=self.class_name, width=14).grid(row=0, column=1)
        tk.Label(entries, text="radius (Å)").grid(row=1, column=0)
        self.class_radius = tk.StringVar()
        tk.Entry(entries, textvariable=self.class_radius, width=14).grid(row=1, column=1)
        buttons = tk.Frame(frame)
        buttons.pack(fill="x")
        tk.Button(buttons, text="Add", command=self.add_class_from_entries).pack(side="left")
        tk.Button(buttons, text="Rename / resize", command=self.update_class_from_entries).pack(side="left")
        tk.Button(buttons, text="Colour...", command=self.choose_colour).pack(side="left")

    def _build_display_controls(self, panel: tk.Frame) -> None:
        frame = tk.LabelFrame(panel, text="Display")
        frame.pack(fill="x", pady=(8, 0))
        self.range_std = tk.DoubleVar(value=3.0)
        self.lowpass = tk.DoubleVar(value=0.0)
        tk.Scale(
            frame,
            label="contrast range (± std)",
            variable=self.range_std,
            from_=0.5,
            to=8,
            resolution=0.1,
            orient="horizontal",
            command=lambda _: self.render(),
        ).pack(fill="x")
        tk.Scale(
            frame,
            label="low-pass σ (voxels, 0: off)",
            variable=self.lowpass,
            from_=0,
            to=6,
            resolution=0.5,
            orient="horizontal",
            command=lambda _: self.render(),
        ).pack(fill="x")
        self.slice_vars = {}
        for view, axis_name in (("XY", "z"), ("XZ", "y"), ("YZ", "x")):
            variable = tk.IntVar()
            scale = tk.Scale(
                frame,
                label=f"{view} slice ({axis_name})",
                variable=variable,
                orient="horizontal",
                command=lambda value, v=view: self.set_slice(v, int(float(value))),
            )
            scale.pack(fill="x")
            self.slice_vars[view] = (variable, scale)
        zoom = tk.Frame(frame)
        zoom.pack(fill="x")
        tk.Label(zoom, text="zoom").pack(side="left")
        tk.Button(zoom, text="-", width=2, command=lambda: self.zoom(1 / ZOOM_STEP)).pack(side="left")
        tk.Button(zoom, text="+", width=2, command=lambda: self.zoom(ZOOM_STEP)).pack(side="left")
        tk.Button(zoom, text="fit", command=self.fit).pack(side="left")

    def _bind_view(self, canvas: tk.Canvas, view: str) -> None:
        canvas.bind("<ButtonPress-1>", lambda e: self._press(view, e))
        canvas.bind("<B1-Motion>", lambda e: self._motion(view, e))
        canvas.bind("<ButtonRelease-1>", lambda e: self._release())
        canvas.bind("<ButtonPress-3>", lambda e: self._delete_at(view, e))
        canvas.bind("<ButtonPress-2>", lambda e: self._start_pan(view, e))
        canvas.bind("<B2-Motion>", lambda e: self._do_pan(view, e))
        canvas.bind("<Button-4>", lambda e: self._wheel(view, e, 1))
        canvas.bind("<Button-5>", lambda e: self._wheel(view, e, -1))
        canvas.bind("<MouseWheel>", lambda e: self._wheel(view, e, 1 if e.delta > 0 else -1))

    # ----------------------------------------------------------------- state
    @property
    def annotation(self) -> Annotation:
        return self.annotations[self.tomograms[self.tomo_index][0]]

    def show_tomogram(self, index: int) -> None:
        """Show tomogram ``index`` (of the list given), keeping the other views' settings."""
        if not 0 <= index < len(self.tomograms) or index == self.tomo_index:
            return
        self.tomo_index = index
        tsId, path = self.tomograms[index]
        self.volume = io.read_volume(path)
        self.shape = self.volume.shape
        # One contrast for every slice, from a sample: a slice never needs the whole tomogram.
        self.mean_std = sampled_mean_std(self.volume)
        self._image_cache.clear()
        self.selected = None
        self.cursor = np.array([(n - 1) // 2 for n in self.shape[::-1]])
        for view, (_variable, scale) in self.slice_vars.items():
            size = self.shape[2 - VIEW_AXES[view][2]]
            scale.configure(from_=0, to=size - 1)
        self.tomo_label.set(f"{index + 1} / {len(self.tomograms)}: {tsId}")
        self.fit()

    def fit(self) -> None:
        """Zoom and pan so that the whole tomogram shows."""
        width, height = view_area(self.master.winfo_screenwidth(), self.master.winfo_screenheight())
        self.scale = fit_scale(self.shape, width, height)
        self.centre = np.array([(n - 1) / 2 for n in self.shape[::-1]])
        for view, (width, height) in canvas_sizes(self.shape, self.scale).items():
            self.canvases[view].configure(width=width, height=height)
        self.render()

    def zoom(self, factor: float) -> None:
        self.scale *= factor
        self.render()

    def set_slice(self, view: str, index: int) -> None:
        axis = VIEW_AXES[view][2]
        self.cursor[axis] = int(np.clip(index, 0, self.shape[2 - axis] - 1))
        self.render()

    def set_current_class(self, class_id: int) -> None:
        if 1 <= class_id <= len(self.classes):
            self.current_class = class_id
            self._refresh_classes()

    # ----------------------------------------------------------------- drawing
    def render(self) -> None:
        """Redraw the three views, their particles and the status line."""
        for view in VIEW_AXES:
            self._render_view(view)
        for view, (variable, _) in self.slice_vars.items():
            variable.set(int(self.cursor[VIEW_AXES[view][2]]))
        self._refresh_classes()
        counts = self.annotation.counts()
        per_class = ", ".join(f"{c.name}: {counts.get(i, 0)}" for i, c in enumerate(self.classes, 1))
        x, y, z = self.cursor
        self.status.set(
            f"{self.tomograms[self.tomo_index][0]}  |  {per_class}  |  "
            f"slices x {x}, y {y}, z {z}  |  zoom {self.scale:.2f} px/voxel"
        )

    def _render_view(self, view: str) -> None:
        canvas = self.canvases[view]
        size = (int(canvas.cget("width")), int(canvas.cget("height")))
        index = int(self.cursor[VIEW_AXES[view][2]])
        lowpass, range_std = float(self.lowpass.get()), float(self.range_std.get())
        key = (view, index, tuple(self.centre), self.scale, size, lowpass, range_std)
        if key not in self._image_cache:
            if len(self._image_cache) >= IMAGE_CACHE_SIZE:
                del self._image_cache[next(iter(self._image_cache))]
            image = canvas_image(
                self.volume,
                view,
                index,
                self.centre,
                self.scale,
                size,
                range_std,
                # A low-pass lowers the spread: its slices get their own contrast.
                None if lowpass else self.mean_std,
                lowpass,
            )
            self._image_cache[key] = ImageTk.PhotoImage(Image.fromarray(image))
        self._photos[view] = self._image_cache[key]
        canvas.itemconfigure("image", image=self._photos[view])
        canvas.tag_raise("name")
        self._draw_overlay(view)

    def _draw_overlay(self, view: str) -> None:
        canvas = self.canvases[view]
        canvas.delete("overlay")
        size = (int(canvas.cget("width")), int(canvas.cget("height")))
        u, v, w = VIEW_AXES[view]
        column, row = to_canvas(view, self.cursor, self.centre, self.scale, size)
        canvas.create_line(column, 0, column, size[1], fill="#5f8fbf", dash=(3, 5), tags="overlay")
        canvas.create_line(0, row, size[0], row, fill="#5f8fbf", dash=(3, 5), tags="overlay")
        xyz, class_id = self._positions(), self._class_ids()
        for index in self._shown_particles():
            particle_class = self.classes[class_id[index] - 1]
            offset = abs(xyz[index, w] - self.cursor[w])
            if offset > particle_class.radius_voxels:
                continue
            radius = max(np.sqrt(particle_class.radius_voxels**2 - offset**2) * self.scale, 3)
            column, row = to_canvas(view, xyz[index], self.centre, self.scale, size)
            selected = index == self.selected
            canvas.create_oval(
                column - radius,
                row - radius,
                column + radius,
                row + radius,
                tags="overlay",
                **self._outline(index, particle_class, selected),
            )
            if selected:
                canvas.create_line(column - 4, row, column + 5, row, fill="white", tags="overlay")
                canvas.create_line(column, row - 4, column, row + 5, fill="white", tags="overlay")

    def _shown_particles(self) -> np.ndarray:
        """Indices of the particles the views show: those of the tomogram shown."""
        return np.arange(len(self.annotation.xyz))

    def _class_ids(self) -> np.ndarray:
        return self.annotation.class_id

    def _outline(self, index: int, particle_class: ParticleClass, selected: bool) -> dict:
        """Tk options of the circle of particle ``index``."""
        return {"outline": particle_class.colour, "width": 3 if selected else 2}

    def _class_counts(self) -> dict[int, int]:
        """Particles per class id, shown in the class list."""
        return self.annotation.counts()

    def _refresh_classes(self) -> None:
        counts = self._class_counts()
        self.class_list.delete(0, "end")
        for class_id, particle_class in enumerate(self.classes, start=1):
            radius_A = particle_class.radius_voxels * self.voxel_size
            self.class_list.insert(
                "end", f"{class_id}  {particle_class.name}  (r {radius_A:.0f} Å)  {counts.get(class_id, 0)}"
            )
            self.class_list.itemconfigure(
                class_id - 1, foreground=particle_class.colour, selectforeground=particle_class.colour
            )
        self.class_list.selection_clear(0, "end")
        self.class_list.selection_set(self.current_class - 1)

    # ----------------------------------------------------------------- events
    def _point(self, view: str, event) -> np.ndarray:
        canvas = self.canvases[view]
        size = (int(canvas.cget("width")), int(canvas.cget("height")))
        return from_canvas(
            view, event.x, event.y, self.cursor[VIEW_AXES[view][2]], self.centre, self.scale, size
        )

    def _radii(self) -> dict[int, float]:
        return {i: c.radius_voxels for i, c in enumerate(self.classes, start=1)}

    def _hit(self, view: str, point: np.ndarray) -> int | None:
        return self.annotation.nearest(
            point, VIEW_AXES[view][2], self._radii(), min_radius=CLICK_TOLERANCE_PX / self.scale
        )

    def _press(self, view: str, event) -> None:
        point = self._point(view, event)
        hit = self._hit(view, point)
        if hit is None:
            hit = self.annotation.add(self.current_class, point)
            self._changed()
        self._start_drag(hit)

    def _start_drag(self, index: int) -> None:
        self.selected = index
        self._drag = (index, False)
        self._draw_all_overlays()

    def _motion(self, view: str, event) -> None:
        if self._drag is None:
            return
        index, moved = self._drag
        point = self._point(view, event)
        # Dragging moves a particle within the view's plane only.
        w = VIEW_AXES[view][2]
        point[w] = self._positions()[index, w]
        self._move(index, point, first_of_drag=not moved)
        self._drag = (index, True)
        self._draw_overlay(view)

    def _release(self) -> None:
        if self._drag is None:
            return
        index, moved = self._drag
        self._drag = None
        if moved:
            self._changed()
        self._show_particle(index)

    def _positions(self) -> np.ndarray:
        """(n, 3) positions (voxels) of the particles the mouse edits."""
        return self.annotation.xyz

    def _move(self, index: int, xyz: np.ndarray, first_of_drag: bool) -> None:
        # One undo puts a dragged particle back where the drag started.
        self.annotation.move(index, xyz, remember=first_of_drag)

    def _show_particle(self, index: int) -> None:
        # Linked views: the other slices go through the particle just clicked.
        self.cursor = np.clip(
            np.round(self._positions()[index]).astype(int), 0, np.array(self.shape[::-1]) - 1
        )
        self.render()

    def _delete_at(self, view: str, event) -> None:
        hit = self._hit(view, self._point(view, event))
        if hit is not None:
            self.annotation.delete(hit)
            self.selected = None
            self._changed()
            self.render()

    def _wheel(self, view: str, event, direction: int) -> None:
        if event.state & 0x4:
            self.zoom(ZOOM_STEP if direction > 0 else 1 / ZOOM_STEP)
        else:
            self.set_slice(view, self.cursor[VIEW_AXES[view][2]] + direction)

    def _start_pan(self, view: str, event) -> None:
        self._pan = (view, event.x, event.y)

    def _do_pan(self, view: str, event) -> None:
        if self._pan is None:
            return
        _, x0, y0 = self._pan
        u, v, _ = VIEW_AXES[view]
        self.centre[u] -= (event.x - x0) / self.scale
        self.centre[v] += (event.y - y0) / self.scale
        self._pan = (view, event.x, event.y)
        self.render()

    def _draw_all_overlays(self) -> None:
        for view in VIEW_AXES:
            self._draw_overlay(view)

    def _on_class_selected(self, _event) -> None:
        selection = self.class_list.curselection()
        if selection:
            self.current_class = selection[0] + 1
            particle_class = self.classes[self.current_class - 1]
            self.class_name.set(particle_class.name)
            self.class_radius.set(f"{particle_class.radius_voxels * self.voxel_size:g}")

    # ----------------------------------------------------------------- actions
    def delete_selected(self) -> None:
        if self.selected is not None:
            self.annotation.delete(self.selected)
            self.selected = None
            self._changed()
            self.render()

    def undo(self) -> None:
        if self.annotation.undo():
            self.selected = None
            self._changed()
            self.render()

    def add_class_from_entries(self) -> None:
        name, radius = self._class_entries(renamed=None)
        if name is None:
            return
        self.classes.append(ParticleClass(name, default_colour(len(self.classes) + 1), radius))
        self.current_class = len(self.classes)
        self._changed()
        self.render()

    def update_class_from_entries(self) -> None:
        name, radius = self._class_entries(renamed=self.classes[self.current_class - 1])
        if name is None:
            return
        particle_class = self.classes[self.current_class - 1]
        particle_class.name, particle_class.radius_voxels = name, radius
        self._changed()
        self.render()

    def choose_colour(self) -> None:
        particle_class = self.classes[self.current_class - 1]
        _, colour = colorchooser.askcolor(
            particle_class.colour, parent=self.master, title=f"Colour of {particle_class.name}"
        )
        if colour:
            particle_class.colour = colour
            self._changed()
            self.render()

    def _class_entries(self, renamed: ParticleClass | None) -> tuple[str | None, float]:
        """Name and radius (voxels) typed in, or (None, 0) after telling the user what is wrong."""
        name = self.class_name.get().strip().replace(",", "_")
        try:
            radius_A = float(self.class_radius.get())
        except ValueError:
            radius_A = -1.0
        taken = {c.name for c in self.classes if c is not renamed}
        if not name or radius_A <= 0 or name in taken:
            self.status.set("Give a new class name and a positive radius in Å.")
            return None, 0.0
        return name, radius_A / self.voxel_size

    def _changed(self) -> None:
        tsId = self.tomograms[self.tomo_index][0]
        self.on_change(tsId, self.annotation.table(), list(self.classes))

    def save(self) -> None:
        try:
            self.on_save()
        except Exception as error:
            self.status.set(f"Saving failed: {error}")
            raise
        self.status.set("Saved.")

    def save_and_close(self) -> None:
        """Close the window: the particles are already saved, the caller saves the rest."""
        self.master.destroy()


def _typing(event) -> bool:
    return isinstance(event.widget, tk.Entry)


def annotate(
    tomograms: list[tuple[str, str]],
    classes: list[ParticleClass],
    particles: dict[str, ParticleTable],
    voxel_size: float,
    on_change: ChangeCallback,
    on_save: Callable[[], None],
) -> None:
    """Open the annotation window and return when the user closes it.

    Every edit is passed to ``on_change`` as it happens; ``on_save`` runs when the
    user asks to save. Run it again after this returns if the final state matters.
    """
    root = tk.Tk()
    AnnotationWindow(root, tomograms, classes, particles, voxel_size, on_change, on_save)
    root.mainloop()
