import streamlit as st

st.title("presenter")
st.info("This page is being built.")
