"""Baseline of the length-of-stay track: gradient-boosted trees on a visit's department,
hospital, cost and the patient's age. One number of days per row of visits."""

import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor


def _features(tables, columns=None):
    visits = tables["visits"]
    patients = tables["patients"][["person_id", "birth_year"]]
    rows = visits.merge(patients, on="person_id", how="left")
    frame = pd.DataFrame(
        {
            "cost": rows["cost"],
            "age": pd.to_datetime(rows["visit_date"]).dt.year - rows["birth_year"],
        }
    )
    frame = frame.join(pd.get_dummies(rows["department"], prefix="dept", dtype=float))
    frame = frame.join(pd.get_dummies(rows["hospital"], prefix="hosp", dtype=float))
    return frame if columns is None else frame.reindex(columns=columns, fill_value=0.0)


def fit(train):
    features = _features(train)
    target = train["visits"]["length_of_stay"]
    known = target.notna()
    model = HistGradientBoostingRegressor(max_iter=100, loss="absolute_error")
    model.fit(features[known], target[known])
    return {"model": model, "columns": list(features.columns)}


def predict(model, features):
    return model["model"].predict(_features(features, model["columns"])).clip(0, None)
