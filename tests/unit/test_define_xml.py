"""define.xml for the sponsor package: Define-XML 2.1 that the official schema (CDISC's XSDs as odmlib ships them)
accepts, describing every dataset and variable as the XPT holds it (labels, types, lengths, origins, methods),
byte for byte the same from the same input, with year-only dates never claimed as dates; and the verifier's check
that a define.xml describes exactly the package's datasets."""

from __future__ import annotations

import importlib.util
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import pyreadstat
import pytest
from lxml import etree

from trialcoord.exports.define_xml import DEF_NS, ODM_NS, XLINK_NS, define_problems, define_xml
from trialcoord.exports.rules.sdtm import Dataset, Kind, Origin, Variable, dataset
from trialcoord.exports.transport import xpt_bytes
from trialcoord.kernel.problems import InvalidInput

NS = {"odm": ODM_NS, "def": DEF_NS, "xlink": XLINK_NS}
AT = "2026-12-07T10:00:00Z"
STUDY = "TST-1"


def _schema() -> etree.XMLSchema:
    spec = importlib.util.find_spec("odmlib")
    assert spec is not None and spec.submodule_search_locations, "odmlib (the test extra) ships the XSDs"
    path = Path(spec.submodule_search_locations[0]) / "schemas" / "define" / "2.1" / "define2-1-0.xsd"
    return etree.XMLSchema(etree.parse(str(path)))


SCHEMA = _schema()


def _v(name: str, label: str, kind: Kind = Kind.TEXT, origin: Origin = Origin.ASSIGNED, rule: str | None = None):
    return Variable(name, label, kind, origin, rule)


def _ids() -> tuple[Variable, ...]:
    return (_v("STUDYID", "Study Identifier"), _v("DOMAIN", "Domain Abbreviation"))


SUBJECT = _v("USUBJID", "Unique Subject Identifier")


def _rows(domain: str, *rows: dict) -> list[dict]:
    return [{"STUDYID": STUDY, "DOMAIN": domain, **row} for row in rows]


def tv() -> Dataset:
    """Visit 3 is for arm A only: TV holds one record per planned visit per arm."""
    variables = (
        *_ids(),
        _v("VISITNUM", "Visit Number", Kind.NUMBER, Origin.PROTOCOL),
        _v("VISIT", "Visit Name", origin=Origin.PROTOCOL),
        _v("VISITDY", "Planned Study Day of Visit", Kind.NUMBER, Origin.PROTOCOL),
        _v("ARMCD", "Planned Arm Code", origin=Origin.PROTOCOL),
        _v("ARM", "Description of Planned Arm", origin=Origin.PROTOCOL),
        _v("TVSTRL", "Visit Start Rule", origin=Origin.PROTOCOL),
    )
    rows = []
    for arm, name in (("A", "Drug A"), ("B", "Placebo")):
        rows += _rows(
            "TV",
            {"VISITNUM": 1, "VISIT": "SCREENING", "VISITDY": -14, "ARMCD": arm, "ARM": name, "TVSTRL": "Day -14"},
            {"VISITNUM": 2, "VISIT": "BASELINE", "VISITDY": 1, "ARMCD": arm, "ARM": name, "TVSTRL": "Day 1"},
        )
    rows += _rows(
        "TV",
        {"VISITNUM": 3, "VISIT": "PK SAMPLING", "VISITDY": 8, "ARMCD": "A", "ARM": "Drug A", "TVSTRL": "Day 8 +/- 1"},
    )
    return dataset("TV", "Trial Visits", variables, rows)


UNSCHEDULED = "Planned visits: TV's VISITNUM; unscheduled: the previous visit's + 0.1 per visit"
SV_RULE = "SVSTDTC - RFSTDTC + 1 on or after RFSTDTC, else SVSTDTC - RFSTDTC (no day 0)"


def sv(dates: tuple[str | None, ...] = ("2024-02-20", "2024-03-05", "2024-03-20")) -> Dataset:
    """The unscheduled visit after visit 2 is numbered 2.1."""
    variables = (
        *_ids(),
        SUBJECT,
        _v("VISITNUM", "Visit Number", Kind.NUMBER, Origin.ASSIGNED, UNSCHEDULED),
        _v("VISIT", "Visit Name", origin=Origin.PROTOCOL),
        _v("SVSTDTC", "Start Date/Time of Observation", origin=Origin.COLLECTED),
        _v("SVSTDY", "Study Day of Start of Observation", Kind.NUMBER, Origin.DERIVED, SV_RULE),
    )
    rows = _rows(
        "SV",
        {"USUBJID": "TST-1-101-1001", "VISITNUM": 1, "VISIT": "SCREENING", "SVSTDTC": dates[0], "SVSTDY": -13},
        {"USUBJID": "TST-1-101-1001", "VISITNUM": 2, "VISIT": "BASELINE", "SVSTDTC": dates[1], "SVSTDY": 1},
        {"USUBJID": "TST-1-101-1001", "VISITNUM": 2.1, "VISIT": "UNSCHEDULED 2.1", "SVSTDTC": dates[2], "SVSTDY": 16},
    )
    return dataset("SV", "Subject Visits", variables, rows)


EPOCH_RULE = "The epoch of TA whose element spans DVSTDTC for the subject's arm"


def dv() -> Dataset:
    variables = (
        *_ids(),
        SUBJECT,
        _v("DVSEQ", "Sequence Number", Kind.NUMBER, Origin.ASSIGNED, "1, 2, ... per subject in order of DVSTDTC"),
        _v("DVTERM", "Protocol Deviation Term", origin=Origin.COLLECTED),
        _v("DVDECOD", "Protocol Deviation Coded Term", origin=Origin.ASSIGNED),
        _v("EPOCH", "Epoch", origin=Origin.DERIVED, rule=EPOCH_RULE),
        _v("DVSTDTC", "Start Date/Time of Deviation", origin=Origin.COLLECTED),
    )
    rows = _rows(
        "DV",
        {
            "USUBJID": "TST-1-101-1001",
            "DVSEQ": 1,
            "DVTERM": "Visit 2 done 4 days after its window (target day 1 +/- 2) & <late>",
            "DVDECOD": "VISIT OUT OF WINDOW",
            "EPOCH": "TREATMENT",
            "DVSTDTC": "2024-03-09",
        },
        {
            "USUBJID": "TST-1-101-1001",
            "DVSEQ": 2,
            "DVTERM": "Visit 3 missed",
            "DVDECOD": "MISSED VISIT",
            "EPOCH": "TREATMENT",
            "DVSTDTC": "2024-03-20",
        },
    )
    return dataset("DV", "Protocol Deviations", variables, rows)


def suppdv() -> Dataset:
    variables = (
        _v("STUDYID", "Study Identifier"),
        _v("RDOMAIN", "Related Domain Abbreviation"),
        SUBJECT,
        _v("IDVAR", "Identifying Variable"),
        _v("IDVARVAL", "Identifying Variable Value"),
        _v("QNAM", "Qualifier Variable Name"),
        _v("QLABEL", "Qualifier Variable Label"),
        _v("QVAL", "Data Value", origin=Origin.COLLECTED),
        _v("QORIG", "Origin"),
    )
    row = {"STUDYID": STUDY, "RDOMAIN": "DV", "USUBJID": "TST-1-101-1001", "IDVAR": "DVSEQ", "IDVARVAL": "1"}
    rows = [
        {**row, "QNAM": "DVIMPT", "QLABEL": "Important Deviation", "QVAL": "Y", "QORIG": "Assigned"},
        {**row, "QNAM": "DVCAPA", "QLABEL": "Corrective Action", "QVAL": "Retrain site staff", "QORIG": "Collected"},
    ]
    return dataset("SUPPDV", "Supplemental Qualifiers for DV", variables, rows)


def ds(consented: str = "2024-02-19") -> Dataset:
    variables = (
        *_ids(),
        SUBJECT,
        _v("DSSEQ", "Sequence Number", Kind.NUMBER),
        _v("DSTERM", "Reported Term for the Disposition Event", origin=Origin.COLLECTED),
        _v("DSDECOD", "Standardized Disposition Term"),
        _v("DSCAT", "Category for Disposition Event"),
        _v("DSSTDTC", "Start Date/Time of Disposition Event", origin=Origin.COLLECTED),
    )
    consent = {"DSTERM": "INFORMED CONSENT OBTAINED", "DSDECOD": "INFORMED CONSENT OBTAINED"}
    rows = _rows(
        "DS",
        {"USUBJID": "TST-1-101-1001", "DSSEQ": 1, **consent, "DSCAT": "PROTOCOL MILESTONE", "DSSTDTC": consented},
        {"USUBJID": "TST-1-101-1002", "DSSEQ": 1, **consent, "DSCAT": "PROTOCOL MILESTONE", "DSSTDTC": consented},
    )
    return dataset("DS", "Disposition", variables, rows)


def dm(consented: str = "2024-02-19", started: str = "2024-03-04") -> Dataset:
    variables = (
        *_ids(),
        SUBJECT,
        _v("SUBJID", "Subject Identifier for the Study"),
        _v("RFSTDTC", "Subject Reference Start Date/Time", origin=Origin.DERIVED, rule="Date of the baseline visit"),
        _v("RFICDTC", "Date/Time of Informed Consent", origin=Origin.COLLECTED),
        _v("SITEID", "Study Site Identifier"),
        _v("AGE", "Age", Kind.NUMBER, Origin.COLLECTED),
        _v("SEX", "Sex", origin=Origin.COLLECTED),
        _v("ARMCD", "Planned Arm Code"),
    )
    rows = _rows(
        "DM",
        {
            "USUBJID": "TST-1-101-1001",
            "SUBJID": "1001",
            "RFSTDTC": started,
            "RFICDTC": consented,
            "SITEID": "101",
            "AGE": 54,
            "SEX": "F",
            "ARMCD": "A",
        },
        {
            "USUBJID": "TST-1-101-1002",
            "SUBJID": "1002",
            "RFSTDTC": None,
            "RFICDTC": consented,
            "SITEID": "101",
            "AGE": 61,
            "SEX": "M",
            "ARMCD": "B",
        },
    )
    return dataset("DM", "Demographics", variables, rows)


def package() -> list[Dataset]:
    return [dm(), ds(), dv(), suppdv(), sv(), tv()]


def build(datasets: list[Dataset] | None = None, **changes: str) -> bytes:
    arguments = {"study": STUDY, "title": "A test study", "protocol": "TST-1 protocol, version 2", "generated_at": AT}
    return define_xml(package() if datasets is None else datasets, **{**arguments, **changes})


def _tree(content: bytes) -> etree._Element:
    return etree.fromstring(content)


def _item(root: etree._Element, data: str, variable: str) -> etree._Element:
    found = root.find(f".//odm:ItemDef[@OID='IT.{data}.{variable}']", NS)
    assert found is not None, f"{data}.{variable}"
    return found


def _text(element: etree._Element) -> str:
    return element.findtext("odm:Description/odm:TranslatedText", namespaces=NS)


def test_the_official_define_xml_2_1_schema_accepts_it():
    root = _tree(build())
    assert SCHEMA.validate(root), SCHEMA.error_log
    names = [g.get("Name") for g in root.iterfind(".//odm:ItemGroupDef", NS)]
    assert names == ["TV", "DM", "SV", "DS", "DV", "SUPPDV"]  # trial design, special purpose, events, relationship


@pytest.mark.parametrize(
    ("break_it", "complaint"),
    [
        (lambda root: root.attrib.pop(f"{{{DEF_NS}}}Context"), "Context"),
        (lambda root: root.find(".//def:Class", NS).set("Name", "SPECIAL-PURPOSE"), "SPECIAL-PURPOSE"),
        (lambda root: _item(root, "DM", "RFICDTC").set("DataType", "partialdate"), "partialdate"),
        (lambda root: _item(root, "DM", "AGE").set("Length", "0"), "Length"),
        (lambda root: root.find(".//odm:ItemRef", NS).attrib.pop("Mandatory"), "Mandatory"),
        (lambda root: root.find(".//def:leaf", NS).attrib.pop(f"{{{XLINK_NS}}}href"), "href"),
    ],
)
def test_the_schema_catches_a_broken_document(break_it, complaint):
    """So the validation above can fail: each of these breaks a rule of Define-XML 2.1 or ODM 1.3.2."""
    root = _tree(build())
    break_it(root)
    assert not SCHEMA.validate(root)
    assert complaint in str(SCHEMA.error_log)


def test_every_dataset_is_described_with_its_class_structure_keys_and_file():
    root = _tree(build())
    expected = {
        "TV": ("TRIAL DESIGN", "One record per planned Visit per Arm", ["STUDYID", "ARMCD", "VISITNUM"], "Yes"),
        "DM": ("SPECIAL PURPOSE", "One record per subject", ["STUDYID", "USUBJID"], "No"),
        "SV": ("SPECIAL PURPOSE", "One record per actual or planned visit per subject", None, "No"),
        "DS": ("EVENTS", "One record per disposition status or protocol milestone per subject", None, "No"),
        "DV": ("EVENTS", "One record per protocol deviation per subject", ["STUDYID", "USUBJID", "DVSEQ"], "No"),
        "SUPPDV": ("RELATIONSHIP", "One record per IDVAR, IDVARVAL, and QNAM value per subject", None, "No"),
    }
    for data in package():
        group = root.find(f".//odm:ItemGroupDef[@Name='{data.name}']", NS)
        cls, structure, keys, reference = expected[data.name]
        assert _text(group) == data.label
        assert group.find("def:Class", NS).get("Name") == cls
        assert group.get(f"{{{DEF_NS}}}Structure") == structure
        assert (group.get("Purpose"), group.get("IsReferenceData")) == ("Tabulation", reference)
        assert group.get("Domain") == ("DV" if data.name == "SUPPDV" else data.name)
        leaf = group.find("def:leaf", NS)
        assert leaf.get("ID") == group.get(f"{{{DEF_NS}}}ArchiveLocationID") == f"LF.{data.name}"
        assert (
            leaf.get(f"{{{XLINK_NS}}}href") == leaf.findtext("def:title", namespaces=NS) == f"{data.name.lower()}.xpt"
        )
        standard = root.find(f".//def:Standard[@OID='{group.get(f'{{{DEF_NS}}}StandardOID')}']", NS)
        assert (standard.get("Name"), standard.get("Version")) == ("SDTMIG", "3.4")
        refs = group.findall("odm:ItemRef", NS)
        assert [r.get("ItemOID") for r in refs] == [f"IT.{data.name}.{n}" for n in data.names]
        assert [r.get("OrderNumber") for r in refs] == [str(n) for n in range(1, len(refs) + 1)]
        keyed = sorted(
            (int(r.get("KeySequence")), r.get("ItemOID").split(".")[-1]) for r in refs if r.get("KeySequence")
        )
        if keys:
            assert [name for _, name in keyed] == keys
    mandatory = {r.get("ItemOID"): r.get("Mandatory") for r in root.iterfind(".//odm:ItemRef", NS)}
    assert mandatory["IT.DV.DVTERM"] == mandatory["IT.SUPPDV.QVAL"] == mandatory["IT.TV.TVSTRL"] == "Yes"
    assert mandatory["IT.DV.DVDECOD"] == mandatory["IT.DM.RFSTDTC"] == "No"


def test_every_variable_is_described_with_its_label_type_length_and_origin():
    datasets = package()
    root = _tree(build(datasets))
    for data in datasets:
        lengths = data.lengths()
        for variable in data.variables:
            item = _item(root, data.name, variable.name)
            assert (item.get("Name"), item.get("SASFieldName"), _text(item)) == (
                variable.name,
                variable.name,
                variable.label,
            )
            assert item.find("def:Origin", NS).get("Type") == variable.origin.value
            if variable.kind is Kind.TEXT and not variable.name.endswith("DTC"):
                assert (item.get("DataType"), item.get("Length")) == ("text", str(lengths[variable.name]))
    typed = {
        ("TV", "VISITNUM"): ("integer", "1", None),
        ("TV", "VISITDY"): ("integer", "2", None),  # -14: two digits, the sign is not one
        ("SV", "VISITNUM"): ("float", "2", "1"),  # 2.1, the unscheduled visit
        ("SV", "SVSTDY"): ("integer", "2", None),
        ("SV", "SVSTDTC"): ("date", None, None),  # a date has no Length in Define-XML 2.1
        ("DV", "DVTERM"): ("text", str(len(dv().rows[0][4])), None),
        ("DM", "AGE"): ("integer", "2", None),
    }
    for (data, name), (data_type, length, digits) in typed.items():
        item = _item(root, data, name)
        assert (item.get("DataType"), item.get("Length"), item.get("SignificantDigits")) == (data_type, length, digits)
    assert _item(root, "DV", "DVTERM").find("def:Origin", NS).get("Source") == "Investigator"


def test_text_lengths_are_those_the_xpt_files_hold():
    """Cross-checked with the files themselves, read by pyreadstat (not by trialcoord); the dates are the XPT's
    only character columns without a stated length."""
    root = _tree(build())
    for data in (dv(), suppdv(), tv()):
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{data.name.lower()}.xpt"
            path.write_bytes(xpt_bytes(data, datetime(2026, 12, 7, 10, tzinfo=UTC)))
            _, meta = pyreadstat.read_xport(str(path), metadataonly=True)
        for variable in data.variables:
            item = _item(root, data.name, variable.name)
            if item.get("DataType") == "text":
                assert item.get("Length") == str(meta.variable_storage_width[variable.name]), variable.name
            elif variable.kind is Kind.TEXT:  # an ISO 8601 date: Define-XML 2.1 states no Length for it
                assert (item.get("DataType"), item.get("Length")) == ("date", None)


def test_derived_variables_have_their_method_and_stated_rules_a_comment():
    root = _tree(build())
    ref = root.find(".//odm:ItemRef[@ItemOID='IT.SV.SVSTDY']", NS)
    method = root.find(f".//odm:MethodDef[@OID='{ref.get('MethodOID')}']", NS)
    assert (method.get("Type"), _text(method)) == ("Computation", SV_RULE)
    assert _text(root.find(".//odm:MethodDef[@OID='MT.DV.EPOCH']", NS)) == EPOCH_RULE
    derived = {r.get("ItemOID") for r in root.iterfind(".//odm:ItemRef[@MethodOID]", NS)}
    assert derived == {"IT.SV.SVSTDY", "IT.DV.EPOCH", "IT.DM.RFSTDTC"}
    comment_oid = _item(root, "DV", "DVSEQ").get(f"{{{DEF_NS}}}CommentOID")
    comment = root.find(f".//def:CommentDef[@OID='{comment_oid}']", NS)
    assert _text(comment) == "1, 2, ... per subject in order of DVSTDTC"
    assert _item(root, "DV", "DVTERM").get(f"{{{DEF_NS}}}CommentOID") is None


def test_the_same_input_gives_the_same_bytes_in_any_order():
    first = build()
    assert build() == first
    assert build(list(reversed(package()))) == first
    assert build(generated_at="2026-12-07T10:00:01Z") != first
    assert first.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ODM ')
    root = _tree(first)
    assert root.get("CreationDateTime") == AT
    assert root.findtext(".//odm:ProtocolName", namespaces=NS) == "TST-1 protocol, version 2"


def test_a_year_only_date_is_a_partial_date_never_a_date():
    """Safe-harbor mode keeps the year of every date (HIPAA 164.514(b)(2)); a full date stays a date."""
    year_only = [dm("2024", "2024"), ds("2024"), sv(("2024", "2024", "2024"))]
    root = _tree(build(year_only))
    assert SCHEMA.validate(root), SCHEMA.error_log
    for data, name in (("DM", "RFSTDTC"), ("DM", "RFICDTC"), ("DS", "DSSTDTC"), ("SV", "SVSTDTC")):
        assert _item(root, data, name).get("DataType") == "partialDate"
    mixed = _tree(build([sv(("2024-02-20", "2024-03", None))]))
    assert _item(mixed, "SV", "SVSTDTC").get("DataType") == "partialDate"
    full = _tree(build([dm(), sv()]))
    assert {_item(full, "DM", "RFICDTC").get("DataType"), _item(full, "SV", "SVSTDTC").get("DataType")} == {"date"}


def test_markup_and_non_ascii_text_is_escaped_and_reads_back_as_given():
    title = 'Étude <pilote> & "mère" — phase 2'
    rule = 'VISITDY < 0 & VISIT ends in > or "quotes"'
    data = dataset(
        "SV",
        "Subject Visits & <more>",
        (
            *_ids(),
            SUBJECT,
            _v("VISITNUM", "Visit Number", Kind.NUMBER),
            _v("SVSTDY", "Study Day of Start of Observation", Kind.NUMBER, Origin.DERIVED, rule),
        ),
        _rows("SV", {"USUBJID": "S-1", "VISITNUM": 1, "SVSTDY": 1}),
    )
    content = build([data], title=title, protocol="Protocole n° 2 <final>")
    assert b"&amp; &lt;more&gt;" in content
    root = _tree(content)
    assert SCHEMA.validate(root), SCHEMA.error_log
    assert root.findtext(".//odm:StudyDescription", namespaces=NS) == title
    assert root.findtext(".//odm:ProtocolName", namespaces=NS) == "Protocole n° 2 <final>"
    assert _text(root.find(".//odm:ItemGroupDef", NS)) == "Subject Visits & <more>"
    assert _text(root.find(".//odm:MethodDef", NS)) == rule


@pytest.mark.parametrize(
    ("datasets", "changes", "named"),
    [
        (None, {"generated_at": "2026-12-07 10:00"}, "'2026-12-07 10:00' is not a UTC instant"),
        (None, {"generated_at": "2026-12-07T10:00:00+01:00"}, "is not a UTC instant"),
        (None, {"generated_at": "2026-13-07T10:00:00Z"}, "is not a UTC instant"),
        ([], {}, "there is no dataset to describe"),
        ([dm(), dm()], {}, "dataset DM is given twice"),
        ([dataset("AE", "Adverse Events", (_v("STUDYID", "Study Identifier"),), [])], {}, "dataset AE: no SDTMIG"),
    ],
)
def test_what_cannot_be_described_is_refused_and_named(datasets, changes, named):
    with pytest.raises(InvalidInput) as refused:
        build(datasets, **changes)
    assert named in str(refused.value)


def test_metadata_that_would_not_be_true_of_the_rows_is_refused():
    """Keys that identify a record, values SDTMIG requires, and a method for every derived variable."""
    twice = dv()
    twice = Dataset(twice.name, twice.label, twice.variables, (twice.rows[0], twice.rows[0]))
    no_term = Dataset("DV", "Protocol Deviations", dv().variables, ((*dv().rows[0][:4], None, *dv().rows[0][5:]),))
    unruled = Dataset(
        "SV",
        "Subject Visits",
        tuple(v if v.name != "SVSTDY" else _v("SVSTDY", "Day", Kind.NUMBER, Origin.DERIVED) for v in sv().variables),
        sv().rows,
    )
    keyless = Dataset("DV", "Protocol Deviations", dv().variables[:3], tuple(r[:3] for r in dv().rows))
    cases = [
        (twice, "dataset DV: rows 1 and 2 share the keys STUDYID='TST-1', USUBJID='TST-1-101-1001', DVSEQ=1"),
        (no_term, "dataset DV, row 1, variable DVTERM: SDTMIG requires a value"),
        (unruled, "dataset SV, variable SVSTDY: derived, so its rule in words is needed"),
        (keyless, "dataset DV: key variable DVSEQ is missing"),
    ]
    for data, named in cases:
        with pytest.raises(InvalidInput) as refused:
            build([data])
        assert named in str(refused.value)


def test_the_verifier_finds_nothing_wrong_with_a_define_xml_of_the_same_datasets():
    assert define_problems(build(), package()) == []


def _longer_term() -> Dataset:
    data = dv()
    row = list(data.rows[1])
    row[4] = "Visit 3 missed: " + "x" * 120
    return Dataset(data.name, data.label, data.variables, (data.rows[0], tuple(row)))


def _without(content: bytes, xpath: str) -> bytes:
    root = _tree(content)
    for element in root.iterfind(xpath, NS):
        element.getparent().remove(element)
    return etree.tostring(root)


@pytest.mark.parametrize(
    ("content", "datasets", "named"),
    [
        (lambda: build(), lambda: [*package(), _renamed(dm(), "DX")], "define.xml does not describe dataset DX"),
        (lambda: build(), lambda: package()[:-1], "define.xml describes dataset TV, which the package does not hold"),
        (
            lambda: build(),
            lambda: [_longer_term() if d.name == "DV" else d for d in package()],
            "variable DVTERM: define.xml states text of length",
        ),
        (
            lambda: build([sv()]),
            lambda: [sv(("2024", "2024", "2024"))],
            "variable SVSTDTC: define.xml states date; the values are partialDate",
        ),
        (lambda: build([dv()]), lambda: [_dropped(dv(), "EPOCH")], "dataset DV: define.xml lists the variables"),
        (lambda: build([dv()]), lambda: [_relabelled(dv())], "dataset DV: define.xml's label is 'Protocol Deviations'"),
        (
            lambda: _without(build([sv()]), ".//odm:MethodDef"),
            lambda: [sv()],
            "refers to MT.SV.SVSTDY, which it does not define",
        ),
        (lambda: b"<ODM><unclosed></ODM>", lambda: [sv()], "define.xml is not well-formed XML"),
        (
            lambda: b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>',
            lambda: [sv()],
            "not ODM",
        ),
    ],
)
def test_the_verifier_names_what_define_xml_does_not_describe(content, datasets, named):
    problems = define_problems(content(), datasets())
    assert any(named in problem for problem in problems), problems


def _renamed(data: Dataset, name: str) -> Dataset:
    return Dataset(name, data.label, data.variables, data.rows)


def _relabelled(data: Dataset) -> Dataset:
    return Dataset(data.name, "Deviations", data.variables, data.rows)


def _dropped(data: Dataset, name: str) -> Dataset:
    keep = [i for i, v in enumerate(data.variables) if v.name != name]
    return Dataset(
        data.name,
        data.label,
        tuple(data.variables[i] for i in keep),
        tuple(tuple(r[i] for i in keep) for r in data.rows),
    )
