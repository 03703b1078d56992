"""The table-question set of bench/tables.py: spreadsheets written at run time from the real public
tables in ../shared/eval/pdfs (nothing of them is copied into the repository), and questions whose
gold answers are computed from those rows with plain Python, independently of any SQL.

Files written: nics_checks.xlsx (firearm background checks by state, from en_table_nics_checks_1p.pdf;
the rows whose cells add up to their total), home_loan_rates.csv (en_table_loan_rates_2p.pdf),
季度报告主要数据.csv and 利润表.csv (zh_quarterly_report_tables_22p.pdf, pages 3 and 15),
停车区用地指标.xlsx (table 7.5 of zh_landuse_standard_table_1p.pdf).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

PDFS = "pdfs"
BASE = "用地指标基准值（公顷/处）"
NICS_COLUMNS = ["State", "Permit", "Handgun", "Long Gun", "Other", "Multiple", "Admin"]
LOAN_COLUMNS = ["Loan type", "Annual rate", "Comparison rate", "Package rate", "Package comparison rate",
                "Interest only rate", "Interest only comparison rate"]


def _text(pdf: Path, page: int) -> str:
    from pypdf import PdfReader

    return PdfReader(pdf).pages[page - 1].extract_text() or ""


def _num(cell: str) -> float:
    return float(cell.replace(",", "").replace("%", ""))


def nics(eval_dir: Path) -> list[dict]:
    """States' checks: the first six counts and the total, for rows of 22 counts that add up to their total."""
    rows = []
    for line in _text(eval_dir / PDFS / "en_table_nics_checks_1p.pdf", 1).splitlines():
        # pypdf's text runs a zero into the next count ("011,925"): split it off
        tokens = [p for t in line.split() for p in (["0", t[1:]] if re.fullmatch(r"0\d{1,3}(,\d{3})+", t) else [t])]
        if len(tokens) > 22 and all(re.fullmatch(r"\d{1,3}(,\d{3})*", t) for t in tokens[-22:]):
            counts = [_num(c) for c in tokens[-22:]]
            if abs(sum(counts[:-1]) - counts[-1]) < 0.5:
                rows.append({"State": " ".join(tokens[:-22]), **dict(zip(NICS_COLUMNS[1:], counts[:6])), "Totals": counts[-1]})
    return rows


def loans(eval_dir: Path) -> list[dict]:
    """The six principal-and-interest loan types: four rates each side, and the interest-only rates."""
    rows = []
    for line in _text(eval_dir / PDFS / "en_table_loan_rates_2p.pdf", 1).splitlines():
        match = re.match(r"(Standard Variable Rate|\d Year Fixed Rate) \1 ((?:[\d.]+% ){4}).*? ([\d.]+%) ([\d.]+%)", line)
        if match:
            rates = [_num(c) for c in match[2].split()] + [_num(match[3]), _num(match[4])]
            rows.append({"Loan type": match[1], **dict(zip(LOAN_COLUMNS[1:], rates))})
    return rows


def quarterly(eval_dir: Path) -> tuple[list[dict], list[dict]]:
    """Page 3's main figures (本报告期, 上年同期, 增减) and page 15's income-statement lines (本期, 上期)."""
    pdf = eval_dir / PDFS / "zh_quarterly_report_tables_22p.pdf"
    main = []
    for line in _text(pdf, 3).splitlines():
        m = re.fullmatch(r"(\S+（元(?:/股)?）) (-?[\d,.]+) (-?[\d,.]+) (-?[\d.]+)%", line.strip())
        if m:
            main.append({"项目": m[1], "本报告期": _num(m[2]), "上年同期": _num(m[3]), "增减(%)": _num(m[4])})
    income = []
    for line in _text(pdf, 15).splitlines():
        m = re.fullmatch(r"(?:[一二三四五六七八九十]、|减：|加：)?(\S+?)(?:（[^）]*）)? (-?[\d,]+\.\d\d) (-?[\d,]+\.\d\d)", line.strip())
        if m:
            income.append({"项目": m[1], "本期发生额": _num(m[2]), "上期发生额": _num(m[3])})
    return main, income


def landuse(eval_dir: Path) -> list[dict]:
    """Table 7.5: rest-area land-use base values by road class and lanes."""
    rows, grade = [], ""
    text = _text(eval_dir / PDFS / "zh_landuse_standard_table_1p.pdf", 1)
    part = text[text.index("表 7.5 "): text.index("表 7.6 停车区")]
    for m in re.finditer(r"(高速公路|一级公路|二级公路)?\s*([二四六八]) ([\d.]+) (\S+) (\S+)", part):
        grade = m[1] or grade
        rows.append({"公路技术等级": grade, "车道数": "二四六八".index(m[2]) * 2 + 2, "用地指标基准值（公顷/处）": _num(m[3]),
                     "路段交通量": m[4], "大型车比例": m[5]})
    return rows


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _xlsx(path: Path, sheet: str, rows: list[dict]) -> None:
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    ws.title = sheet
    ws.append(list(rows[0]))
    for row in rows:
        ws.append(list(row.values()))
    book.save(path)


def build(eval_dir: Path, folder: Path) -> dict[str, list[dict]]:
    """Write the spreadsheets into `folder`; the rows of each, by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    main, income = quarterly(eval_dir)
    data = {"nics_checks.xlsx": nics(eval_dir), "home_loan_rates.csv": loans(eval_dir), "季度报告主要数据.csv": main,
            "利润表.csv": income, "停车区用地指标.xlsx": landuse(eval_dir)}
    for name, rows in data.items():
        assert rows, f"no rows parsed for {name}"
        if name.endswith(".csv"):
            _csv(folder / name, rows)
        else:
            _xlsx(folder / name, "checks by state" if name.startswith("nics") else "表7.5", rows)
    return data


Gold = Callable[[list[dict]], object]


def _col(rows: list[dict], name: str) -> list[float]:
    return [r[name] for r in rows]


def _by(rows: list[dict], key: str, value: object) -> dict:
    return next(r for r in rows if r[key] == value)


def _argmax(rows: list[dict], key: str, name: str) -> str:
    return max(rows, key=lambda r: r[name])[key]


def _lanes(rows: list[dict], grade: str, lanes: int) -> float:
    return next(x for x in rows if x["公路技术等级"] == grade and x["车道数"] == lanes)[BASE]


def _argmin(rows: list[dict], key: str, name: str) -> str:
    return min(rows, key=lambda r: r[name])[key]


N, L, M, P, U = "nics_checks.xlsx", "home_loan_rates.csv", "季度报告主要数据.csv", "利润表.csv", "停车区用地指标.xlsx"
# The PDF each spreadsheet was written from (bench/tables.py --from-pdfs).
PDF_OF = {N: "en_table_nics_checks_1p.pdf", L: "en_table_loan_rates_2p.pdf", M: "zh_quarterly_report_tables_22p.pdf",
          P: "zh_quarterly_report_tables_22p.pdf", U: "zh_landuse_standard_table_1p.pdf"}
# (language, file, question, gold from the file's rows); a gold of None marks a question the tables cannot answer.
QUESTIONS: list[tuple[str, str, str, Gold | None]] = [
    ("en", N, "What is the total number of permit checks across all states in the NICS table?", lambda r: sum(_col(r, "Permit"))),
    ("en", N, "How many handgun checks were there in Tennessee?", lambda r: _by(r, "State", "Tennessee")["Handgun"]),
    ("en", N, "Which state had the most long gun checks?", lambda r: _argmax(r, "State", "Long Gun")),
    ("en", N, "Which state had the highest total checks?", lambda r: _argmax(r, "State", "Totals")),
    ("en", N, "Which state had the fewest total checks?", lambda r: _argmin(r, "State", "Totals")),
    ("en", N, "How many states had more than 50,000 total checks?", lambda r: sum(x > 50000 for x in _col(r, "Totals"))),
    ("en", N, "How many states had zero admin checks?", lambda r: sum(x == 0 for x in _col(r, "Admin"))),
    ("en", N, "What is the sum of handgun checks in all states?", lambda r: sum(_col(r, "Handgun"))),
    ("en", N, "What were the total checks for Iowa?", lambda r: _by(r, "State", "Iowa")["Totals"]),
    ("en", N, "How many permit checks did Kansas have?", lambda r: _by(r, "State", "Kansas")["Permit"]),
    ("en", N, "What is the average number of handgun checks per state?", lambda r: sum(_col(r, "Handgun")) / len(r)),
    ("en", N, "How many rows are in the NICS checks table?", lambda r: len(r)),
    ("en", N, "What is the maximum number of multiple checks in any state?", lambda r: max(_col(r, "Multiple"))),
    ("en", N, "Which state had the most permit checks?", lambda r: _argmax(r, "State", "Permit")),
    ("en", N, "How many long gun checks did Pennsylvania have?", lambda r: _by(r, "State", "Pennsylvania")["Long Gun"]),
    ("en", N, "How many states had more handgun checks than long gun checks?",
     lambda r: sum(x["Handgun"] > x["Long Gun"] for x in r)),
    ("en", N, "What is the total of the Other column for all states?", lambda r: sum(_col(r, "Other"))),
    ("en", N, "How many states had more than 10,000 permit checks?", lambda r: sum(x > 10000 for x in _col(r, "Permit"))),
    ("en", N, "What were Nevada's handgun checks?", lambda r: _by(r, "State", "Nevada")["Handgun"]),
    ("en", N, "What is the difference between Pennsylvania and Tennessee in total checks?",
     lambda r: (abs(d := _by(r, "State", "Pennsylvania")["Totals"] - _by(r, "State", "Tennessee")["Totals"]), -abs(d))),
    ("en", L, "Which loan type has the lowest annual rate?",  # two types tie at the lowest: either is right
     lambda r: tuple(x["Loan type"] for x in r if x["Annual rate"] == min(_col(r, "Annual rate")))),
    ("en", L, "What is the comparison rate of the 3 Year Fixed Rate loan?", lambda r: _by(r, "Loan type", "3 Year Fixed Rate")["Comparison rate"]),
    ("en", L, "What is the package rate for the 5 Year Fixed Rate?", lambda r: _by(r, "Loan type", "5 Year Fixed Rate")["Package rate"]),
    ("en", L, "How many loan types have an annual rate above 4%?", lambda r: sum(x > 4 for x in _col(r, "Annual rate"))),
    ("en", L, "What is the highest interest only rate?", lambda r: max(_col(r, "Interest only rate"))),
    ("en", L, "Which loan type has the highest comparison rate?", lambda r: _argmax(r, "Loan type", "Comparison rate")),
    ("en", L, "What is the average annual rate of all loan types?", lambda r: sum(_col(r, "Annual rate")) / len(r)),
    ("en", L, "What is the annual rate of the Standard Variable Rate loan?", lambda r: _by(r, "Loan type", "Standard Variable Rate")["Annual rate"]),
    ("en", L, "How many loan types have a package rate below 4%?", lambda r: sum(x < 4 for x in _col(r, "Package rate"))),
    ("en", L, "What is the interest only comparison rate of the 2 Year Fixed Rate?",
     lambda r: _by(r, "Loan type", "2 Year Fixed Rate")["Interest only comparison rate"]),
    ("en", L, "What is the lowest package comparison rate?", lambda r: min(_col(r, "Package comparison rate"))),
    ("zh", M, "本报告期营业收入是多少元？", lambda r: _by(r, "项目", "营业收入（元）")["本报告期"]),
    ("zh", M, "上年同期的营业收入是多少？", lambda r: _by(r, "项目", "营业收入（元）")["上年同期"]),
    ("zh", M, "总资产本报告期末是多少元？", lambda r: _by(r, "项目", "总资产（元）")["本报告期"] if any(
        x["项目"] == "总资产（元）" for x in r) else None),
    ("zh", M, "基本每股收益本报告期是多少？", lambda r: _by(r, "项目", "基本每股收益（元/股）")["本报告期"]),
    ("zh", M, "经营活动产生的现金流量净额上年同期是多少？", lambda r: _by(r, "项目", "经营活动产生的现金流量净额（元）")["上年同期"]),
    ("zh", M, "营业收入比上年同期增减了百分之多少？", lambda r: _by(r, "项目", "营业收入（元）")["增减(%)"]),
    ("zh", M, "主要数据表中有几个项目的增减为正数？", lambda r: sum(x > 0 for x in _col(r, "增减(%)"))),
    ("zh", M, "哪个项目的增减百分比最大？",  # basic and diluted EPS tie
     lambda r: tuple(x["项目"] for x in r if x["增减(%)"] == max(_col(r, "增减(%)")))),
    ("zh", M, "哪个项目的增减百分比最小？", lambda r: _argmin(r, "项目", "增减(%)")),
    ("zh", M, "归属于上市公司股东的净利润本报告期是多少元？", lambda r: _by(r, "项目", "归属于上市公司股东的净利润（元）")["本报告期"]),
    ("zh", P, "管理费用本期发生额是多少？", lambda r: _by(r, "项目", "管理费用")["本期发生额"]),
    ("zh", P, "销售费用上期发生额是多少？", lambda r: _by(r, "项目", "销售费用")["上期发生额"]),
    ("zh", P, "财务费用本期发生额是多少？", lambda r: _by(r, "项目", "财务费用")["本期发生额"]),
    ("zh", P, "税金及附加本期与上期发生额合计是多少？",
     lambda r: _by(r, "项目", "税金及附加")["本期发生额"] + _by(r, "项目", "税金及附加")["上期发生额"]),
    ("zh", P, "利润表中本期发生额最大的项目是哪个？", lambda r: _argmax(r, "项目", "本期发生额")),
    ("zh", P, "利润表中有几个项目的本期发生额为负数？", lambda r: sum(x < 0 for x in _col(r, "本期发生额"))),
    ("zh", P, "管理费用比上期减少了多少元？", lambda r: _by(r, "项目", "管理费用")["上期发生额"] - _by(r, "项目", "管理费用")["本期发生额"]),
    ("zh", P, "销售费用、管理费用和财务费用本期合计是多少？",
     lambda r: sum(_by(r, "项目", k)["本期发生额"] for k in ("销售费用", "管理费用", "财务费用"))),
    ("zh", P, "营业利润本期是多少？", lambda r: _by(r, "项目", "营业利润")["本期发生额"] if any(x["项目"] == "营业利润" for x in r) else None),
    ("zh", P, "营业外支出上期发生额是多少？", lambda r: _by(r, "项目", "营业外支出")["上期发生额"] if any(
        x["项目"] == "营业外支出" for x in r) else None),
    ("zh", U, "高速公路八车道停车区用地指标基准值是多少公顷？", lambda r: _lanes(r, "高速公路", 8)),
    ("zh", U, "一级公路四车道的用地指标基准值是多少？", lambda r: _lanes(r, "一级公路", 4)),
    ("zh", U, "二级公路的用地指标基准值是多少？", lambda r: next(x for x in r if x["公路技术等级"] == "二级公路")["用地指标基准值（公顷/处）"]),
    ("zh", U, "停车区用地指标表中共有几行？", lambda r: len(r)),
    ("zh", U, "高速公路各车道数的用地指标基准值合计是多少？", lambda r: sum(x[BASE] for x in r if x["公路技术等级"] == "高速公路")),
    ("zh", U, "用地指标基准值最大的是哪一级公路？", lambda r: _argmax(r, "公路技术等级", "用地指标基准值（公顷/处）")),
    ("zh", U, "用地指标基准值最小是多少？", lambda r: min(_col(r, "用地指标基准值（公顷/处）"))),
    ("zh", U, "有几种公路技术等级的车道数为六？", lambda r: sum(x["车道数"] == 6 for x in r)),
    ("zh", U, "用地指标基准值大于2公顷的有几行？", lambda r: sum(x > 2 for x in _col(r, "用地指标基准值（公顷/处）"))),
    ("zh", U, "一级公路六车道的用地指标基准值是多少？", lambda r: _lanes(r, "一级公路", 6)),
    ("en", N, "How many firearm checks did Canada have?", None),
    ("en", L, "What is the 10 Year Fixed Rate annual rate?", None),
    ("en", N, "What was the average price of a handgun in Ohio?", None),
    ("zh", M, "本报告期研发投入是多少元？", None),
    ("zh", U, "三级公路两车道的用地指标基准值是多少？", None),
    ("zh", P, "本期员工人数是多少？", None),
]
