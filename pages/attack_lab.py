import streamlit as st

st.title("attack_lab")
st.info("This page is being built.")
