import streamlit as st

st.title("sample")
st.info("This page is being built.")
