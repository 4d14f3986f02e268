from scalenas.utils.markdown import markdown_table


def test_markdown_table_plain_and_padded():
    assert markdown_table(["a", "bb"], [[1, 2.5], ["xyz", None]]) == [
        "| a | bb |", "|---|---|", "| 1 | 2.5 |", "| xyz | None |"]
    assert markdown_table(["a", "bb"], [[1, 2.5]], fmt=lambda v: f"{v:.2f}", pad=True) == [
        "| a    | bb   |", "|------|------|", "| 1.00 | 2.50 |"]
