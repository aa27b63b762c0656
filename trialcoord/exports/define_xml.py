"""Define-XML 2.1 (on ODM 1.3.2) for the sponsor package's SDTM datasets: each dataset an ItemGroupDef pointing at
its .xpt, each variable an ItemDef with its type, length and origin, a MethodDef for each derived variable and a
CommentDef for any other variable whose rule is stated. The bytes depend only on the arguments (OIDs are built
from names, nothing reads the clock), and lxml does all escaping. `define_problems` reads a define.xml back and
says where it does not describe the given datasets (for `verify`, without the schema)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import itemgetter

from lxml import etree

from trialcoord.exports.rules.sdtm import Dataset, Kind, Origin, Value, Variable
from trialcoord.kernel.problems import InvalidInput, Problem

ODM_NS = "http://www.cdisc.org/ns/odm/v1.3"
DEF_NS = "http://www.cdisc.org/ns/def/v2.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_STANDARD = "STD.SDTMIG.3.4"
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


@dataclass(frozen=True, slots=True)
class Domain:
    """What SDTMIG 3.4 says of a dataset that Define-XML repeats: its class, structure, the keys that identify
    a record (in sort order), the variables whose Core is Req (Mandatory), and whether it is subject data."""

    cls: str
    structure: str
    keys: tuple[str, ...]
    required: frozenset[str]
    repeating: bool = True  # more than one record per subject (No for DM and for trial design)
    reference: bool = False  # trial design: the same for every subject


def _req(*names: str) -> frozenset[str]:
    return frozenset(("STUDYID", *names))


DOMAINS = {
    "TA": Domain(
        "TRIAL DESIGN",
        "One record per planned Element per Arm",
        ("STUDYID", "ARMCD", "TAETORD"),
        _req("DOMAIN", "ARMCD", "ARM", "TAETORD", "ETCD", "EPOCH"),
        repeating=False,
        reference=True,
    ),
    "TV": Domain(
        "TRIAL DESIGN",
        "One record per planned Visit per Arm",
        ("STUDYID", "ARMCD", "VISITNUM"),
        _req("DOMAIN", "VISITNUM", "TVSTRL"),
        repeating=False,
        reference=True,
    ),
    "DM": Domain(
        "SPECIAL PURPOSE",
        "One record per subject",
        ("STUDYID", "USUBJID"),
        _req("DOMAIN", "USUBJID", "SUBJID", "SITEID", "SEX", "COUNTRY"),
        repeating=False,
    ),
    # SDTMIG 3.4 keeps SV among the special-purpose domains (section 5), not in the Events class
    "SV": Domain(
        "SPECIAL PURPOSE",
        "One record per actual or planned visit per subject",
        ("STUDYID", "USUBJID", "VISITNUM"),
        _req("DOMAIN", "USUBJID", "VISITNUM"),
    ),
    "DS": Domain(
        "EVENTS",
        "One record per disposition status or protocol milestone per subject",
        ("STUDYID", "USUBJID", "DSSEQ"),
        _req("DOMAIN", "USUBJID", "DSSEQ", "DSTERM", "DSDECOD"),
    ),
    "DV": Domain(
        "EVENTS",
        "One record per protocol deviation per subject",
        ("STUDYID", "USUBJID", "DVSEQ"),
        _req("DOMAIN", "USUBJID", "DVSEQ", "DVTERM"),
    ),
}
SUPPLEMENTAL = Domain(
    "RELATIONSHIP",
    "One record per IDVAR, IDVARVAL, and QNAM value per subject",
    ("STUDYID", "RDOMAIN", "USUBJID", "IDVAR", "IDVARVAL", "QNAM"),
    _req("RDOMAIN", "USUBJID", "QNAM", "QLABEL", "QVAL", "QORIG"),
)
# Reviewers read a define.xml in this order: trial design, special purpose, the general classes, relationships.
_CLASS_ORDER = ("TRIAL DESIGN", "SPECIAL PURPOSE", "INTERVENTIONS", "EVENTS", "FINDINGS", "RELATIONSHIP")


def domain(name: str) -> Domain | None:
    if name.startswith("SUPP") and len(name) == 6:
        return SUPPLEMENTAL
    return DOMAINS.get(name)


@dataclass(frozen=True, slots=True)
class ItemType:
    """A variable's DataType, Length and SignificantDigits as Define-XML states them."""

    data_type: str
    length: int | None = None
    digits: int | None = None


_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PARTIAL_DATE = re.compile(r"\d{4}(-\d{2})?")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?")


def item_types(data: Dataset) -> dict[str, ItemType]:
    """Each variable's type from what its values are, not what they were meant to be: a --DTC column holding a
    year alone (safe-harbor) is a partialDate, a numeric column of whole numbers an integer. Length is stated for
    text, integer and float only (Define-XML 2.1): text's is the XPT's (`Dataset.lengths`), a number's its most
    digits (sign and decimal point not counted), with a float's most decimals as SignificantDigits. Read from the
    columns' distinct values (`Dataset.profile`), which say all of it."""
    profile = data.profile()
    return {
        variable.name: _item_type(
            variable, [value for value in profile.values[variable.name] if value is not None], profile.lengths
        )
        for variable in data.variables
    }


def _item_type(variable: Variable, values: list[Value], lengths: dict[str, int]) -> ItemType:
    if variable.kind is Kind.NUMBER:
        numbers = [float(v) for v in values if isinstance(v, int | float) and not math.isnan(v)]
        if all(n.is_integer() for n in numbers):
            return ItemType("integer", max((len(str(abs(int(n)))) for n in numbers), default=1))
        written = [format(Decimal(repr(abs(n))), "f").split(".") for n in numbers]
        fractions = [parts[1] if len(parts) > 1 else "" for parts in written]
        length = max(len(parts[0].lstrip("0")) + len(fraction) for parts, fraction in zip(written, fractions))
        return ItemType("float", max(length, 1), max(len(f) for f in fractions))
    if variable.name.endswith("DTC"):
        found = _date_type([v for v in values if isinstance(v, str)])
        if found:
            return ItemType(found)
    return ItemType("text", lengths[variable.name])


def _date_type(values: list[str]) -> str | None:
    """date, partialDate, datetime or partialDatetime when every value is one of them, None otherwise (no value
    at all: date, since trialcoord records whole dates)."""
    kinds: set[str] = set()
    for value in values:
        if _FULL_DATE.fullmatch(value):
            kinds.add("date")
        elif _PARTIAL_DATE.fullmatch(value):
            kinds.add("partial")
        elif _DATETIME.fullmatch(value):
            kinds.add("datetime")
        else:
            return None
    if kinds <= {"date"}:
        return "date"
    if kinds == {"datetime"}:
        return "datetime"
    return "partialDatetime" if "datetime" in kinds else "partialDate"


def define_xml(datasets: Sequence[Dataset], *, study: str, title: str, protocol: str, generated_at: str) -> bytes:
    """define.xml for `datasets` (each written as `<name lower>.xpt` beside it), created at `generated_at`
    (an ISO 8601 UTC instant, e.g. 2026-12-07T10:00:00Z). Datasets are listed in SDTMIG class order."""
    _check(datasets, study, generated_at)
    odm = _element(
        "ODM",
        {
            "ODMVersion": "1.3.2",
            "FileType": "Snapshot",
            "FileOID": f"DEFINE.{study}.{generated_at}",
            "CreationDateTime": generated_at,
            "SourceSystem": "trialcoord",
            f"{{{DEF_NS}}}Context": "Submission",
        },
        nsmap={None: ODM_NS, "def": DEF_NS, "xlink": XLINK_NS},
    )
    study_element = etree.SubElement(odm, _odm("Study"), OID=f"STUDY.{study}")
    variables = etree.SubElement(study_element, _odm("GlobalVariables"))
    for tag, text in (("StudyName", study), ("StudyDescription", title), ("ProtocolName", protocol)):
        etree.SubElement(variables, _odm(tag)).text = text
    version = etree.SubElement(
        study_element,
        _odm("MetaDataVersion"),
        {
            "OID": f"MDV.{study}.SDTMIG.3.4",
            "Name": f"{study} SDTM tabulation datasets",
            "Description": f"Data definitions of the SDTM datasets of study {study}",
            f"{{{DEF_NS}}}DefineVersion": "2.1.0",
        },
    )
    standards = etree.SubElement(version, _def("Standards"))
    etree.SubElement(
        standards, _def("Standard"), OID=_STANDARD, Name="SDTMIG", Type="IG", Version="3.4", Status="Final"
    )
    ordered = sorted(datasets, key=_class_order)
    for data in ordered:
        _item_group(version, data)
    for data in ordered:
        types = item_types(data)
        for variable in data.variables:
            _item_def(version, data, variable, types[variable.name])
    for data in ordered:
        for variable in data.variables:
            if variable.origin is Origin.DERIVED:
                method = etree.SubElement(
                    version,
                    _odm("MethodDef"),
                    OID=_oid("MT", data, variable),
                    Name=f"Algorithm to derive {data.name}.{variable.name}",
                    Type="Computation",
                )
                _description(method, variable.rule or "")
    for data in ordered:
        for variable in data.variables:
            if variable.rule and variable.origin is not Origin.DERIVED:
                _description(
                    etree.SubElement(version, _def("CommentDef"), OID=_oid("COM", data, variable)), variable.rule
                )
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + bytes(etree.tostring(odm, encoding="UTF-8", pretty_print=True))


def _check(datasets: Sequence[Dataset], study: str, generated_at: str) -> None:
    problems: list[Problem] = []
    if not _INSTANT.fullmatch(generated_at) or not _is_instant(generated_at):
        problems.append(
            Problem(f"{generated_at!r} is not a UTC instant like 2026-12-07T10:00:00Z", field="generated_at")
        )
    if not study.strip():
        problems.append(Problem("the study's name is empty", field="study"))
    if not datasets:
        problems.append(Problem("there is no dataset to describe", field="datasets"))
    seen: set[str] = set()
    for data in datasets:
        where = f"dataset {data.name}"
        if data.name in seen:
            problems.append(Problem(f"{where} is given twice", field="datasets"))
        seen.add(data.name)
        known = domain(data.name)
        if known is None:
            names = ", ".join([*DOMAINS, "SUPP--"])
            problems.append(Problem(f"{where}: no SDTMIG 3.4 metadata for it (known: {names})", field="datasets"))
            continue
        problems += _data_problems(data, known)
    if problems:
        raise InvalidInput(problems)


def _data_problems(data: Dataset, known: Domain) -> list[Problem]:
    """The metadata must be true of the rows: keys present and unique, required values present, rules stated."""
    where = f"dataset {data.name}"
    problems = [
        Problem(f"{where}: key variable {key} is missing", field="variables")
        for key in known.keys
        if key not in data.names
    ]
    problems += [
        Problem(f"{where}, variable {v.name}: derived, so its rule in words is needed for the method", field="rule")
        for v in data.variables
        if v.origin is Origin.DERIVED and not (v.rule and v.rule.strip())
    ]
    if problems:
        return problems
    keys = [data.names.index(key) for key in known.keys]
    values = data.profile().values
    key_of = itemgetter(*keys) if len(keys) > 1 else lambda row: (row[keys[0]],)
    unique = len(set(map(key_of, data.rows))) == len(data.rows)
    if unique and not any(None in values[v.name] for v in data.variables if v.name in known.required):
        return problems  # fine: the row by row walk below is only to name what is not
    first_row: dict[tuple[object, ...], int] = {}
    for number, row in enumerate(data.rows, start=1):
        key = tuple(row[i] for i in keys)
        if key in first_row:
            shared = ", ".join(f"{k}={v!r}" for k, v in zip(known.keys, key))
            problems.append(Problem(f"{where}: rows {first_row[key]} and {number} share the keys {shared}"))
        first_row.setdefault(key, number)
        for variable, value in zip(data.variables, row):
            if value is None and variable.name in known.required:
                problems.append(
                    Problem(f"{where}, row {number}, variable {variable.name}: SDTMIG requires a value", field="value")
                )
    return problems


def _is_instant(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _class_order(data: Dataset) -> tuple[int, str]:
    known = domain(data.name)
    return (_CLASS_ORDER.index(known.cls) if known else len(_CLASS_ORDER), data.name)


def _item_group(parent: etree._Element, data: Dataset) -> None:
    known = domain(data.name)
    assert known is not None  # checked
    is_supplemental = known is SUPPLEMENTAL
    group = etree.SubElement(
        parent,
        _odm("ItemGroupDef"),
        {
            "OID": f"IG.{data.name}",
            # a SUPP-- dataset belongs to its parent's domain (its rows' RDOMAIN)
            "Domain": data.name[4:] if is_supplemental else data.name,
            "Name": data.name,
            "Repeating": "Yes" if known.repeating else "No",
            "IsReferenceData": "Yes" if known.reference else "No",
            "SASDatasetName": data.name,
            "Purpose": "Tabulation",
            f"{{{DEF_NS}}}Structure": known.structure,
            f"{{{DEF_NS}}}ArchiveLocationID": f"LF.{data.name}",
            f"{{{DEF_NS}}}StandardOID": _STANDARD,
        },
    )
    _description(group, data.label)
    for order, variable in enumerate(data.variables, start=1):
        ref = etree.SubElement(
            group,
            _odm("ItemRef"),
            ItemOID=_oid("IT", data, variable),
            OrderNumber=str(order),
            Mandatory="Yes" if variable.name in known.required else "No",
        )
        if variable.name in known.keys:
            ref.set("KeySequence", str(known.keys.index(variable.name) + 1))
        if variable.origin is Origin.DERIVED:
            ref.set("MethodOID", _oid("MT", data, variable))
    etree.SubElement(group, _def("Class"), Name=known.cls)
    leaf = etree.SubElement(group, _def("leaf"), {"ID": f"LF.{data.name}", f"{{{XLINK_NS}}}href": xpt_name(data)})
    etree.SubElement(leaf, _def("title")).text = xpt_name(data)


def _item_def(parent: etree._Element, data: Dataset, variable: Variable, typed: ItemType) -> None:
    item = etree.SubElement(
        parent, _odm("ItemDef"), OID=_oid("IT", data, variable), Name=variable.name, DataType=typed.data_type
    )
    if typed.length is not None:
        item.set("Length", str(typed.length))
    if typed.digits is not None:
        item.set("SignificantDigits", str(typed.digits))
    item.set("SASFieldName", variable.name)
    if variable.rule and variable.origin is not Origin.DERIVED:
        item.set(f"{{{DEF_NS}}}CommentOID", _oid("COM", data, variable))
    _description(item, variable.label)
    origin = etree.SubElement(item, _def("Origin"), Type=variable.origin.value)
    if variable.origin is Origin.COLLECTED:
        origin.set("Source", "Investigator")  # recorded at the site


def xpt_name(data: Dataset) -> str:
    return f"{data.name.lower()}.xpt"


def _oid(prefix: str, data: Dataset, variable: Variable) -> str:
    return f"{prefix}.{data.name}.{variable.name}"


def _description(parent: etree._Element, text: str) -> None:
    description = etree.SubElement(parent, _odm("Description"))
    etree.SubElement(description, _odm("TranslatedText"), {_LANG: "en"}).text = text


def _element(tag: str, attributes: dict[str, str], nsmap: dict[str | None, str]) -> etree._Element:
    return etree.Element(_odm(tag), attributes, nsmap=nsmap)  # type: ignore[arg-type]  # lxml-stubs: no None key


def _odm(tag: str) -> str:
    return f"{{{ODM_NS}}}{tag}"


def _def(tag: str) -> str:
    return f"{{{DEF_NS}}}{tag}"


# --- reading a define.xml back -------------------------------------------------------------------------------------

_NS = {"odm": ODM_NS, "def": DEF_NS, "xlink": XLINK_NS}


def define_problems(content: bytes, datasets: Sequence[Dataset]) -> list[str]:
    """Where `content` (a define.xml) does not describe exactly `datasets`: the same datasets with their labels
    and files, the same variables in the same order with their labels, types and lengths, and every OID it refers
    to defined. Empty when it does. Needs no schema and never fetches anything."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as error:
        return [f"define.xml is not well-formed XML: {error}"]
    if root.tag != _odm("ODM"):
        return [f"define.xml's root is {root.tag}, not ODM 1.3 (ODM)"]
    versions = root.findall("odm:Study/odm:MetaDataVersion", _NS)
    if len(versions) != 1 or versions[0].get(f"{{{DEF_NS}}}DefineVersion") != "2.1.0":
        return ["define.xml has no single MetaDataVersion of Define-XML 2.1.0"]
    version = versions[0]
    problems = _reference_problems(version)
    groups = {g.get("Name", ""): g for g in version.findall("odm:ItemGroupDef", _NS)}
    items = {i.get("OID", ""): i for i in version.findall("odm:ItemDef", _NS)}
    expected = {d.name: d for d in datasets}
    problems += [f"define.xml does not describe dataset {name}" for name in expected if name not in groups]
    problems += [
        f"define.xml describes dataset {name}, which the package does not hold"
        for name in groups
        if name not in expected
    ]
    for name, data in expected.items():
        if name in groups:
            problems += _group_problems(data, groups[name], items)
    return problems


def _reference_problems(version: etree._Element) -> list[str]:
    defined = {e.get("OID") for e in version.iter() if e.get("OID") is not None}
    leaves = {e.get("ID") for e in version.iter(_def("leaf"))}
    problems: list[str] = []
    for element in version.iter():
        for attribute in ("ItemOID", "MethodOID", f"{{{DEF_NS}}}CommentOID", f"{{{DEF_NS}}}StandardOID"):
            target = element.get(attribute)
            if target is not None and target not in defined:
                problems.append(f"define.xml refers to {target}, which it does not define")
        location = element.get(f"{{{DEF_NS}}}ArchiveLocationID")
        if location is not None and location not in leaves:
            problems.append(f"define.xml refers to file {location}, which it does not define")
    return problems


def _group_problems(data: Dataset, group: etree._Element, items: dict[str, etree._Element]) -> list[str]:
    where = f"dataset {data.name}"
    problems: list[str] = []
    if _text(group) != data.label:
        problems.append(f"{where}: define.xml's label is {_text(group)!r}, the dataset's {data.label!r}")
    href = group.find("def:leaf", _NS)
    if href is None or href.get(f"{{{XLINK_NS}}}href") != xpt_name(data):
        problems.append(f"{where}: define.xml does not point at {xpt_name(data)}")
    refs = sorted(group.findall("odm:ItemRef", _NS), key=lambda r: int(r.get("OrderNumber") or 0))
    described = [items.get(r.get("ItemOID", "")) for r in refs]
    names = [item.get("Name", "") for item in described if item is not None]
    if names != list(data.names):
        problems.append(f"{where}: define.xml lists the variables {names}; the dataset has {list(data.names)}")
    by_name = {item.get("Name", ""): item for item in described if item is not None}
    types = item_types(data)
    for variable in data.variables:
        item = by_name.get(variable.name)
        if item is None:
            continue
        at = f"{where}, variable {variable.name}"
        typed = types[variable.name]
        stated = ItemType(
            item.get("DataType", ""),
            _number(item.get("Length")),
            _number(item.get("SignificantDigits")),
        )
        if stated != typed:
            problems.append(f"{at}: define.xml states {_shown(stated)}; the values are {_shown(typed)}")
        if _text(item) != variable.label:
            problems.append(f"{at}: define.xml's label is {_text(item)!r}, the dataset's {variable.label!r}")
    return problems


def _text(element: etree._Element) -> str | None:
    found = element.find("odm:Description/odm:TranslatedText", _NS)
    return found.text if found is not None else None


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _shown(typed: ItemType) -> str:
    shown = typed.data_type
    if typed.length is not None:
        shown += f" of length {typed.length}"
    if typed.digits is not None:
        shown += f" with {typed.digits} decimals"
    return shown
