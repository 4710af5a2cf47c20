"""Documents the user chats with: ``extract.py`` turns a file of any format we
index (plain text, Markdown, reStructuredText, HTML, PDF, DOCX, EPUB, ODT,
source code) into paragraph-like blocks in reading order, each with its page or
line range and heading path, so that the index built on top can cite a passage
by file, page or lines; a file it cannot read is skipped with a one-line reason
instead of stopping the index.
"""
