"""Baseline of the 30-day readmission track: logistic regression on a visit's cost, length
of stay, department and the patient's age and sex. One probability per row of visits."""

import pandas as pd
from sklearn.linear_model import LogisticRegression


def _features(tables, columns=None):
    visits = tables["visits"]
    patients = tables["patients"][["person_id", "sex", "birth_year"]]
    rows = visits.merge(patients, on="person_id", how="left")
    frame = pd.DataFrame(
        {
            "cost": rows["cost"].fillna(0.0),
            "length_of_stay": rows["length_of_stay"].fillna(0),
            "age": (pd.to_datetime(rows["visit_date"]).dt.year - rows["birth_year"]).fillna(50),
            "male": (rows["sex"] == "男").astype(int),
        }
    )
    frame = frame.join(pd.get_dummies(rows["department"], prefix="dept", dtype=float))
    return frame if columns is None else frame.reindex(columns=columns, fill_value=0.0)


def fit(train):
    features = _features(train)
    target = train["visits"]["readmitted_30d"]
    known = target.notna()
    model = LogisticRegression(max_iter=500)
    model.fit(features[known], target[known].astype(int))
    return {"model": model, "columns": list(features.columns)}


def predict(model, features):
    return model["model"].predict_proba(_features(features, model["columns"]))[:, 1]
