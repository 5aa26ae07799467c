"""The manifest of the demo dataset ``health`` (synthetic, Changzhou-like)."""

from __future__ import annotations

from datasets.manifest import Column, ColumnClass, ColumnType, Manifest, Table

C = ColumnClass
T = ColumnType

DISTRICTS = ("天宁区", "钟楼区", "新北区", "武进区", "金坛区", "溧阳市")
SEXES = ("男", "女")
HOSPITALS = (
    "常州市第一人民医院",
    "常州市第二人民医院",
    "常州市第三人民医院",
    "常州市中医医院",
    "常州市妇幼保健院",
    "常州市武进人民医院",
    "常州市金坛第一人民医院",
    "溧阳市人民医院",
)
DEPARTMENTS = (
    "内科",
    "外科",
    "儿科",
    "妇产科",
    "心内科",
    "内分泌科",
    "呼吸科",
    "骨科",
    "神经内科",
    "急诊科",
)
# ICD-10 category code -> (diagnosis, chronic?)
ICD10 = {
    "I10": ("原发性高血压", True),
    "E11": ("2型糖尿病", True),
    "I25": ("慢性缺血性心脏病", True),
    "J44": ("慢性阻塞性肺病", True),
    "E78": ("脂蛋白代谢紊乱", True),
    "I50": ("心力衰竭", True),
    "I63": ("脑梗死", True),
    "C34": ("支气管和肺恶性肿瘤", True),
    "J06": ("急性上呼吸道感染", False),
    "J18": ("肺炎", False),
    "K29": ("胃炎和十二指肠炎", False),
    "A09": ("感染性胃肠炎", False),
    "K80": ("胆石症", False),
    "M54": ("背痛", False),
    "N39": ("泌尿系统其他疾患", False),
    "S72": ("股骨骨折", False),
    "O80": ("单胎顺产", False),
    "F32": ("抑郁发作", False),
    "R51": ("头痛", False),
    "Z00": ("一般检查", False),
}
# test_code -> (name, unit, typical low, typical high)
LAB_TESTS = {
    "GLU": ("空腹血糖", "mmol/L", 3.9, 6.1),
    "HBA1C": ("糖化血红蛋白", "%", 4.0, 6.0),
    "TC": ("总胆固醇", "mmol/L", 2.8, 5.2),
    "LDL": ("低密度脂蛋白", "mmol/L", 1.5, 3.4),
    "HGB": ("血红蛋白", "g/L", 115.0, 160.0),
    "WBC": ("白细胞计数", "10^9/L", 3.5, 9.5),
    "CREA": ("肌酐", "μmol/L", 44.0, 106.0),
    "ALT": ("丙氨酸氨基转移酶", "U/L", 7.0, 40.0),
}
LAB_UNITS = tuple(sorted({unit for _, unit, _, _ in LAB_TESTS.values()}))

HEALTH = Manifest(
    name="health",
    title="常州市健康医疗数据(合成)",
    title_en="Changzhou health data (synthetic)",
    privacy_unit="person_id",
    consent_column="patients.consent_research",
    consent_purposes=("research",),
    tables=(
        Table(
            name="patients",
            description="居民基本信息",
            description_en="Residents",
            max_rows_per_person=1,
            columns=(
                Column("person_id", T.INTEGER, C.PERSON_KEY, "人员编号", "person id"),
                Column("name", T.STRING, C.DIRECT_IDENTIFIER, "姓名", "name"),
                Column("id_card", T.STRING, C.DIRECT_IDENTIFIER, "身份证号", "resident ID number"),
                Column("phone", T.STRING, C.DIRECT_IDENTIFIER, "手机号", "phone"),
                Column("sex", T.STRING, C.CATEGORY, "性别", "sex", categories=SEXES),
                Column(
                    "birth_date",
                    T.DATE,
                    C.QUASI_IDENTIFIER,
                    "出生日期",
                    "birth date",
                    bounds=(1920, 2025),
                ),
                Column(
                    "district", T.STRING, C.CATEGORY, "行政区", "district", categories=DISTRICTS
                ),
                Column("address", T.STRING, C.DIRECT_IDENTIFIER, "住址", "address"),
                Column(
                    "consent_research",
                    T.BOOLEAN,
                    C.CONSENT,
                    "科研使用个人授权",
                    "consent to research use",
                ),
            ),
        ),
        Table(
            name="visits",
            description="就诊记录",
            description_en="Hospital visits",
            max_rows_per_person=10,
            columns=(
                Column("visit_id", T.INTEGER, C.RECORD_KEY, "就诊编号", "visit id"),
                Column("person_id", T.INTEGER, C.PERSON_KEY, "人员编号", "person id"),
                Column("hospital", T.STRING, C.CATEGORY, "医院", "hospital", categories=HOSPITALS),
                Column(
                    "department", T.STRING, C.CATEGORY, "科室", "department", categories=DEPARTMENTS
                ),
                Column("visit_date", T.DATE, C.SENSITIVE, "就诊日期", "visit date"),
                Column(
                    "icd10",
                    T.STRING,
                    C.CATEGORY,
                    "ICD-10 诊断编码",
                    "ICD-10 code",
                    categories=tuple(ICD10),
                ),
                Column(
                    "diagnosis",
                    T.STRING,
                    C.CATEGORY,
                    "诊断",
                    "diagnosis",
                    categories=tuple(d for d, _ in ICD10.values()),
                ),
                Column("cost", T.FLOAT, C.SENSITIVE, "费用(元)", "cost (CNY)", bounds=(0, 50000)),
                Column(
                    "length_of_stay",
                    T.INTEGER,
                    C.SENSITIVE,
                    "住院天数",
                    "length of stay (days)",
                    bounds=(0, 60),
                ),
                Column(
                    "readmitted_30d",
                    T.BOOLEAN,
                    C.SENSITIVE,
                    "30天内再入院",
                    "readmitted in 30 days",
                ),
            ),
        ),
        Table(
            name="labs",
            description="检验结果",
            description_en="Lab results",
            max_rows_per_person=30,
            columns=(
                Column("lab_id", T.INTEGER, C.RECORD_KEY, "检验编号", "lab id"),
                Column("visit_id", T.INTEGER, C.RECORD_KEY, "就诊编号", "visit id"),
                Column("person_id", T.INTEGER, C.PERSON_KEY, "人员编号", "person id"),
                Column(
                    "test_code",
                    T.STRING,
                    C.CATEGORY,
                    "检验项目",
                    "test code",
                    categories=tuple(LAB_TESTS),
                ),
                Column("value", T.FLOAT, C.SENSITIVE, "结果值", "value", bounds=(0, 500)),
                Column("unit", T.STRING, C.CATEGORY, "单位", "unit", categories=LAB_UNITS),
                Column("taken_at", T.TIMESTAMP, C.SENSITIVE, "采样时间", "sampled at"),
            ),
        ),
    ),
)

MANIFESTS = {HEALTH.name: HEALTH}
