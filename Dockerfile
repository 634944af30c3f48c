# GlimpsePrune demo: the Gradio app on port 7860, as a non-root user.
#   docker build -t glimpse-demo . && docker run -p 7860:7860 glimpse-demo
# Real weights: docker run -p 7860:7860 -e GLIMPSE_BASE_MODEL=Qwen/Qwen2.5-VL-7B-Instruct \
#   -e GLIMPSE_MODULES=ashun989/GlimpsePrune_Qwen2.5-VL-7B-Instruct --gpus all glimpse-demo
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    HOME=/home/user \
    GLIMPSE_DEMO_CACHE=/home/user/.cache/glimpse-demo

RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

# dependencies first, so code changes do not reinstall them
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=user:user . .
USER user

# the built-in model is generated offline once, at build time: start-up needs no network
RUN python -c "from glimpse_demo.defaults import default_model; print(default_model())"

EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
