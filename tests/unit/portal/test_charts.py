"""The job page's chart of a released table: kinds, value columns, error bars, suppression."""

from __future__ import annotations

from typing import Any

import pytest

from portal.charts import HEIGHT, MAX_MARKS, TableChart, result_charts, table_chart


def _chart(table: dict[str, Any], **options: Any) -> TableChart:
    chart = table_chart({"name": "result", **table}, **options)
    assert chart is not None
    return chart


def test_chart_categorical_grouping_is_bars_of_first_numeric_column() -> None:
    chart = _chart(
        {
            "columns": ["department", "n", "avg_cost"],
            "rows": [["内科", 120, 350.5], ["外科", 80, 900.0], ["儿科", 40, 120.0]],
        }
    )
    assert chart.kind == "bar"
    assert (chart.category, chart.value, chart.choices) == ("department", "n", ("n", "avg_cost"))
    assert [b.label for b in chart.bars] == ["内科", "外科", "儿科"]
    tallest = max(chart.bars, key=lambda b: b.height)
    assert tallest.label == "内科"
    # Bars stand on zero, which is the bottom of the plot here.
    assert all(b.y + b.height == pytest.approx(chart.zero_y) for b in chart.bars)
    assert not chart.error_bars and chart.series == ()


def test_chart_value_column_may_be_picked_and_unknown_is_ignored() -> None:
    table = {"columns": ["sex", "n", "avg_cost"], "rows": [["F", 10, 5.0], ["M", 12, 7.5]]}
    assert _chart(table, value="avg_cost").value == "avg_cost"
    assert _chart(table, value="nope").value == "n"
    assert _chart(table, value="sex").value == "n"  # a grouping column is not a value


def test_chart_dp_cells_get_error_bars_from_error95() -> None:
    chart = _chart(
        {
            "columns": ["department", "n"],
            "rows": [["a", 100.0], ["b", 50.0]],
            "error95": [[None, 10.0], [None, 5.0]],
            "error95_units": [None, "value"],
        }
    )
    first, second = chart.bars
    assert first.error is not None and second.error is not None
    assert (first.error.low, first.error.high) == (90.0, 110.0)
    assert first.error.y_high < first.y < first.error.y_low  # the interval spans the bar's top
    assert chart.error_bars
    # The axis reaches past the highest interval.
    assert max(t.value for t in chart.y_ticks) >= 110


def test_chart_quantile_errors_in_rank_units_are_not_drawn() -> None:
    chart = _chart(
        {
            "columns": ["department", "median_cost"],
            "rows": [["a", 300.0]],
            "error95": [[None, 12.0]],
            "error95_units": [None, "rank"],
        }
    )
    assert chart.rank_errors and not chart.error_bars


def test_chart_suppressed_cells_are_not_drawn_and_counted() -> None:
    chart = _chart(
        {
            "columns": ["district", "n"],
            "rows": [["东城区", 30], ["西城区", None], ["朝阳区", 25], ["海淀区", None]],
        }
    )
    assert [b.label for b in chart.bars] == ["东城区", "朝阳区"]
    assert chart.suppressed == 2


def test_chart_every_cell_suppressed_draws_nothing() -> None:
    chart = _chart({"columns": ["district", "n"], "rows": [["a", None], ["b", None]]})
    assert chart.drawn == 0 and chart.suppressed == 2


def test_chart_year_column_is_a_line_in_order() -> None:
    chart = _chart(
        {
            "columns": ["visit_year", "n"],
            "rows": [[2022, 30], [2020, 10], [2021, 20]],
        }
    )
    assert chart.kind == "line" and chart.category == "visit_year" and chart.value == "n"
    (line,) = chart.series
    assert [p.label for p in line.points] == ["2020", "2021", "2022"]
    xs = [p.x for p in line.points]
    assert xs == sorted(xs)
    ys = [p.y for p in line.points]
    assert ys == sorted(ys, reverse=True)  # rising values climb up the page


@pytest.mark.parametrize(
    ("values", "in_order"),
    [
        (["2023-03", "2023-01", "2023-02"], ["2023-01", "2023-02", "2023-03"]),
        (["2023-01-03", "2023-01-01"], ["2023-01-01", "2023-01-03"]),
        (
            ["[1980, 2030)", "[1900, 1950)", "[1950, 1980)"],
            ["[1900, 1950)", "[1950, 1980)", "[1980, 2030)"],
        ),
        (["65+", "18-29", "<18", "30-64"], ["<18", "18-29", "30-64", "65+"]),
        (["60岁以上", "18–59岁"], ["18–59岁", "60岁以上"]),
    ],
)
def test_chart_dates_and_bands_are_ordered_lines(values: list[str], in_order: list[str]) -> None:
    chart = _chart({"columns": ["when", "n"], "rows": [[v, i] for i, v in enumerate(values)]})
    assert chart.kind == "line"
    assert [p.label for p in chart.series[0].points] == in_order


def test_chart_codes_are_not_ordered() -> None:
    chart = _chart({"columns": ["code", "n"], "rows": [["110105", 3], ["110101", 4]]})
    assert chart.kind == "bar"


def test_chart_second_grouping_column_makes_one_line_each() -> None:
    rows = [
        [year, sex, year - 2000 + (5 if sex == "F" else 0)] for year in (2020, 2021) for sex in "FM"
    ]
    chart = _chart({"columns": ["birth_year", "sex", "n"], "rows": rows})
    assert chart.kind == "line"
    assert [(s.name, s.index, len(s.points)) for s in chart.series] == [("F", 0, 2), ("M", 1, 2)]


def test_chart_two_categorical_columns_are_bars_with_both_labels() -> None:
    chart = _chart(
        {"columns": ["district", "sex", "n"], "rows": [["东城区", "F", 3], ["东城区", "M", 4]]}
    )
    assert chart.kind == "bar" and chart.category == "district · sex"
    assert [b.label for b in chart.bars] == ["东城区 · F", "东城区 · M"]


def test_chart_negative_noisy_values_hang_below_zero() -> None:
    chart = _chart({"columns": ["g", "n"], "rows": [["a", -4.0], ["b", 8.0]]})
    low, high = chart.bars
    assert low.y == pytest.approx(chart.zero_y)  # hangs down from zero
    assert high.y + high.height == pytest.approx(chart.zero_y)
    assert min(t.value for t in chart.y_ticks) <= -4


def test_chart_many_rows_are_capped_and_labels_turn() -> None:
    rows = [[f"g{i}", i] for i in range(MAX_MARKS + 5)]
    chart = _chart({"columns": ["g", "n"], "rows": rows})
    assert len(chart.bars) == MAX_MARKS and chart.omitted == 5
    assert all(label.rotated for label in chart.x_labels)
    assert chart.height == HEIGHT
    few = _chart({"columns": ["g", "n"], "rows": rows[:3]})
    assert not any(label.rotated for label in few.x_labels)
    assert few.y0 < few.height < HEIGHT  # a line of labels below the plot, no more


def test_chart_long_labels_are_shortened() -> None:
    chart = _chart({"columns": ["g", "n"], "rows": [["x" * 40, 1]]})
    assert len(chart.bars[0].label) == 16 and chart.bars[0].label.endswith("…")


@pytest.mark.parametrize(
    "table",
    [
        {"columns": ["n"], "rows": [[5]]},  # nothing to group by
        {"columns": ["a", "b"], "rows": [["x", "y"]]},  # nothing numeric
        {"columns": ["a", "n"], "rows": []},
        {"columns": ["a", "n"], "rows": [["x"]]},  # a malformed row is skipped
    ],
)
def test_chart_nothing_to_chart_is_none(table: dict[str, Any]) -> None:
    assert table_chart(table) is None


def test_chart_numeric_key_without_name_is_the_first_distinct_whole_column() -> None:
    chart = _chart({"columns": ["length_of_stay", "n"], "rows": [[1, 40], [2, 30], [3, 10]]})
    assert chart.kind == "line" and chart.category == "length_of_stay"


def test_chart_geometry_stays_inside_the_picture() -> None:
    chart = _chart(
        {
            "columns": ["g", "n"],
            "rows": [["a", 1e6], ["b", 3.5]],
            "error95": [[None, 2e5], [None, 1.0]],
        }
    )
    for bar in chart.bars:
        assert chart.x0 <= bar.x and bar.x + bar.width <= chart.x1
        assert chart.top <= bar.y <= HEIGHT
        assert bar.error is not None
        assert chart.top <= bar.error.y_high <= bar.error.y_low <= chart.y0


def test_result_charts_picks_per_table() -> None:
    result = {
        "tables": [
            {"name": "one", "columns": ["g", "n", "m"], "rows": [["a", 1, 2]]},
            {"name": "two", "columns": ["g", "n", "m"], "rows": [["a", 1, 2]]},
        ]
    }
    charts = result_charts(result, {"chart.two": "m"})
    assert charts["one"] is not None and charts["one"].value == "n"
    assert charts["two"] is not None and charts["two"].value == "m"
    assert result_charts(None, {}) == {}
