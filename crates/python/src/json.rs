//! Python dicts ↔ the crates' serde types, through Python's `json` module: a dict is read with
//! the crate's own deserialiser, so unknown fields and wrong types are refused as the crate
//! refuses them in a JSON file.

use pyo3::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Deserialises a Python object (dict, list, …) into `T`.
pub fn from_py<T: DeserializeOwned>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    let json = obj.py().import("json")?;
    let text: String = json.call_method1("dumps", (obj,))?.extract()?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de)
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(format!("{what}: field `{}`: {}", e.path(), e.inner())))
}

/// Serialises `value` into Python objects (dicts, lists, numbers, strings).
pub fn to_py<'py, T: Serialize + ?Sized>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("serialising to Python: {e}")))?;
    py.import("json")?.call_method1("loads", (text,))
}
