import streamlit as st

st.title("was_my_image_used")
st.info("This page is being built.")
