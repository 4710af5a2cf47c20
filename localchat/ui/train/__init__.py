"""The Train window: fine-tune a model you have (LoRA) on your text or your
chats, or train a small GPT from scratch; watch the loss fall (training and
held-out) and the speed; stop at any time and go on later.

Both run as ``localchat train ... --json`` in a process of their own
(``QProcess``): PyTorch never loads in the window's process, a crash in it
cannot take the window down, and the window reads the same JSON lines a
script would. Stop sends the trainer Ctrl+C, which keeps its checkpoint;
starting again with the same name goes on from there. A finished model lands
in the models folder, a finished adapter in the adapters folder: both appear
in the model picker (an adapter under its base model).

One job per module:

- :mod:`.window`: the window, its two pages, one training at a time;
- :mod:`.run_page`: what both pages share (Start, Stop, the plot, the progress);
- :mod:`.scratch_page` and :mod:`.finetune_page`: the two pages;
- :mod:`.lora_form`: the fine-tune's preset and advanced settings;
- :mod:`.fields`: editors made from the trainer's option declarations;
- :mod:`.data_picker`: what a fine-tune learns from (files, folders, chats);
- :mod:`.process`: one ``localchat train`` process and its JSON lines;
- :mod:`.loss_plot`: the loss curves;
- :mod:`.widgets`: small pieces the pages share.
"""
