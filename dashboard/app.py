"""Placeholder entrypoint; the pages arrive with the dashboard issue."""

import streamlit as st

st.title("Usage dashboard")
