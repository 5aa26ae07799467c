"""Baseline of the diagnosis-from-labs track: a random forest on each visit's mean lab
values per test and the patient's age and sex. One ICD-10 code per row of visits (the
diagnosis text and the department are withheld: they would give the code away)."""

import pandas as pd
from sklearn.ensemble import RandomForestClassifier

TESTS = ["ALT", "CREA", "GLU", "HBA1C", "HGB", "LDL", "TC", "WBC"]


def _features(tables):
    visits = tables["visits"]
    patients = tables["patients"][["person_id", "sex", "birth_year"]]
    labs = tables["labs"]
    values = labs.pivot_table(index="visit_id", columns="test_code", values="value", aggfunc="mean")
    values = values.reindex(columns=TESTS)
    rows = visits.merge(patients, on="person_id", how="left")
    rows = rows.merge(values, left_on="visit_id", right_index=True, how="left")
    frame = rows[TESTS].copy()
    frame["age"] = pd.to_datetime(rows["visit_date"]).dt.year - rows["birth_year"]
    frame["male"] = (rows["sex"] == "男").astype(int)
    return frame.fillna(-1.0)


def fit(train):
    target = train["visits"]["icd10"]
    known = target.notna()
    model = RandomForestClassifier(n_estimators=40, min_samples_leaf=5, random_state=0)
    model.fit(_features(train)[known], target[known].astype(str))
    return model


def predict(model, features):
    return model.predict(_features(features))
