"""Axis scales shared by the sweep report's plots."""


def scale_y(ax, log_y: bool) -> None:
    """A log y axis for `log_y` data that span a decade or more. Data within less than a decade
    (errors 0.2824 to 0.2838) keep a linear axis with plain decimal labels: a log axis would
    have no decade inside them and label its minor ticks 2.838x10^-1."""
    low, high = ax.dataLim.y0, ax.dataLim.y1
    if log_y and not (low > 0 and high < 10 * low):
        ax.set_yscale("log")
        return
    from matplotlib.ticker import ScalarFormatter

    ax.yaxis.set_major_formatter(ScalarFormatter(useOffset=False))
