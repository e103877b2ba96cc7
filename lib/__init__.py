"""persona-llm's library: each numbered notebook tells its stage's story and calls these.

The map (flat: lib/<name>.py, one concern each; tests/test_layout.py keeps it true).

01 scrape       scrape.py (collect essays), essays.py (parse paulgraham.com pages),
                transcripts.py (parse and collect interviews), speaker_labels.py (label
                layouts, speaker table and warnings), subtitles.py (.srt/.vtt), chats.py
                (WhatsApp/Telegram exports), local_files.py (a persona from a folder of files),
                new_persona.py (make persona)
02 split        split.py (held-out documents, chunks that fit the model)
03/05 train     train.py (entry point, trainer), train_data.py (examples, batching),
                train_model.py (base, LoRA, 05's merged base), train_resume.py (checkpoints,
                resume, time budget), chat_data.py (conversations tokenized, loss on the
                assistant)
04 qa           qa_sources.py (backtranslation, interviews, own questions, conversations), qa_identity.py
                (who the model is), qa_clean.py (cleaning an LLM's output), qa_duplicates.py
                (near-duplicate questions)
06 quantize     gguf_export.py (llama.cpp's converters and quantizer), gguf_checks.py (KLD,
                perplexity, format and stop checks, in child processes), quant_gate.py (the
                refusal of broken GGUFs), modelfile.py (Ollama)
07 evaluate     eval_prompts.py, eval_systems.py, eval_answers.py (answers, cached and
                resumable), eval_scores.py, eval_identity.py, eval_lengths.py,
                eval_authorship.py (the persona's verifier), authorship.py (the method),
                eval_judge.py (optional LLM judge), eval_report.py, eval_figure.py,
                style_metrics.py, progress_log.py (PROGRESS.md entries)
shared          params.py (load and check), runfiles.py (run folders, atomic writes,
                digests, inputs-changed resets, log tails, number formatting), records.py (typed records between
                stages), stage.py (open_stage: one setup for every notebook), runner.py
                (papermill, stage digests), environment.py, backend.py (unsloth or hf),
                models.py, chat_template.py, bos.py (one BOS rule), llama.py (llama.cpp
                runtime), llama_server.py (a local server), llm_client.py (any
                OpenAI-compatible endpoint), fetch.py, source_files.py, text.py (words,
                sentences, stage directions), tics.py
after the chain talk.py (make talk / make serve), hub.py (push to the Hugging Face hub)
"""
