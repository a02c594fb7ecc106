"""A Tk window showing matplotlib pictures: a choice of pages, Refresh, optional auto-refresh.

The pictures come from :mod:`deepfinder.figures.pictures`; this module only
puts them in a window, with matplotlib's toolbar (zoom, pan, save).
"""

from __future__ import annotations

import tkinter as tk
from collections.abc import Mapping
from tkinter import ttk

from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg, NavigationToolbar2Tk
from matplotlib.figure import Figure

from ..figures.pictures import Draw


class PlotWindow:
    """Show one of several pictures in ``master``, redrawn on demand or every few seconds.

    Parameters
    ----------
    master : tk.Tk or tk.Toplevel
        The window to fill (its title is set here).
    title : str
        Window title.
    pages : {name: draw}
        Pictures to choose from (a list appears when there are several);
        ``draw(figure)`` draws one, reading its files each time.
    refresh_seconds : float
        Redraw the shown page this often (0: only with the Refresh button),
        e.g. to follow a training that is still running.
    """

    def __init__(self, master: tk.Misc, title: str, pages: Mapping[str, Draw], refresh_seconds: float = 0.0):
        if not pages:
            raise ValueError("PlotWindow needs at least one page to show.")
        if refresh_seconds < 0:
            raise ValueError(f"refresh_seconds must be 0 or more, got {refresh_seconds}")
        self.master = master
        self.pages = dict(pages)
        self.refresh_seconds = refresh_seconds
        master.title(title)
        controls = tk.Frame(master)
        controls.pack(side="top", fill="x")
        self.page = tk.StringVar(value=next(iter(self.pages)))
        if len(self.pages) > 1:
            tk.Label(controls, text="Show").pack(side="left", padx=4)
            chooser = ttk.Combobox(
                controls,
                textvariable=self.page,
                values=list(self.pages),
                state="readonly",
                width=max(len(name) for name in self.pages) + 2,
            )
            chooser.pack(side="left")
            chooser.bind("<<ComboboxSelected>>", lambda event: self.refresh())
        tk.Button(controls, text="Refresh", command=self.refresh).pack(side="left", padx=4)
        self.status = tk.StringVar()
        tk.Label(controls, textvariable=self.status, anchor="w").pack(side="left", padx=4)
        self.figure = Figure(figsize=(10, 6))
        self.canvas = FigureCanvasTkAgg(self.figure, master=master)
        NavigationToolbar2Tk(self.canvas, master).update()
        self.canvas.get_tk_widget().pack(side="top", fill="both", expand=True)
        self._timer = None
        self.refresh()

    def refresh(self) -> None:
        """Redraw the chosen page from its files."""
        try:
            self.pages[self.page.get()](self.figure)
            self.status.set(f"auto-refresh every {self.refresh_seconds:g} s" if self.refresh_seconds else "")
        except (OSError, ValueError) as error:
            # A file being written or not there yet: say so and keep the window usable.
            self.figure.clear()
            self.status.set(f"cannot draw {self.page.get()}: {error}")
        self.canvas.draw_idle()
        if self.refresh_seconds:
            if self._timer is not None:
                self.master.after_cancel(self._timer)
            self._timer = self.master.after(int(self.refresh_seconds * 1000), self.refresh)


def open_plot_window(
    title: str, pages: Mapping[str, Draw], refresh_seconds: float = 0.0, parent: tk.Misc | None = None
) -> PlotWindow:
    """A :class:`PlotWindow` in a new top-level window of ``parent`` (its own Tk without one).

    Without a parent nothing else runs Tk's event loop: this call then blocks
    until the window is closed.
    """
    master = tk.Toplevel(parent) if parent is not None else tk.Tk()
    window = PlotWindow(master, title, pages, refresh_seconds)
    if parent is None:
        master.mainloop()
    return window
