import streamlit as st

st.title("target")
st.info("This page is being built.")
