"""Every word the chat app shows, in English and Chinese: the page's language is the browser's (switchable
at the top of the sidebar); a refusal is explained in the question's own language."""

from __future__ import annotations

import streamlit as st

LANGUAGES = {"en": "English", "zh": "中文"}

WORDS: dict[str, tuple[str, str]] = {
    # the top of the sidebar
    "language": ("Language", "语言"),
    "page": ("Page", "页面"),
    "page_chat": ("Chat", "问答"),
    "page_check": ("Check this knowledge base", "检查知识库"),
    # knowledge bases and uploads
    "kb": ("Knowledge base", "知识库"),
    "kb_new": ("New knowledge base", "新建知识库"),
    "kb_name": ("Name", "名称"),
    "kb_create": ("Create", "创建"),
    "add_documents": ("Add documents", "添加文档"),
    "uploader": ("Documents, sheets, slides, e-mail or images (up to {limit} MB each)",
                 "文档、表格、幻灯片、邮件或图片（每个最大 {limit} MB）"),
    "replace": ("Replace documents of the same name", "替换同名文档"),
    "ingest": ("Ingest", "导入"),
    "saved_for_ingest": ("Saved {n} file(s); they are being indexed in the background (you can keep asking).",
                         "已保存 {n} 个文件，正在后台建立索引（可以继续提问）。"),
    "job_queued": ("Waiting to index", "等待建立索引"),
    "job_stage": ("Indexing: {stage} {done} of {total}", "建立索引：{stage} {done}/{total}"),
    "job_done": ("Indexed: {added} added · {unchanged} unchanged · {failed} failed",
                 "索引完成：新增 {added} · 未变 {unchanged} · 失败 {failed}"),
    "job_failed": ("Indexing failed: {error}", "建立索引失败：{error}"),
    "refused_upload": ("not saved", "未保存"),
    "failed_file": ("failed", "失败"),
    "unindexed": ("{n} file(s) in this knowledge base's documents folder are not in the index yet:",
                  "知识库文档文件夹中有 {n} 个文件尚未进入索引："),
    "unindexed_retry": ("Index them now", "立即建立索引"),
    "documents": ("Documents", "文档"),
    "no_documents_sidebar": ("No documents yet.", "还没有文档。"),
    "col_document": ("document", "文档"),
    "col_chunks": ("passages", "段落数"),
    "col_ingested": ("indexed", "索引时间"),
    "delete_choice": ("Document", "文档"),
    "delete": ("Delete document", "删除文档"),
    "deleted": ("Deleted {name}", "已删除 {name}"),
    "watched": ("Watched folders", "监视的文件夹"),
    "watched_folder": ("Folder", "文件夹"),
    "watch_state": ("{state} · last sync {when} · {pending} change(s) pending · {batches} sync(s)",
                    "{state} · 上次同步 {when} · {pending} 个更改待处理 · 已同步 {batches} 次"),
    "watch_stopped": ("stopped (no watcher running)", "已停止（没有运行中的监视程序）"),
    "not_yet": ("not yet", "尚未"),
    # settings
    "settings": ("Settings", "设置"),
    "top_k": ("Passages to show", "显示的段落数"),
    "answer_language": ("Answer language", "回答语言"),
    "lang_auto": ("same as the question", "与问题相同"),
    "show_scores": ("Show retrieval scores", "显示检索分数"),
    "chat_model": ("Chat model", "对话模型"),
    "backend": ("Backend", "后端"),
    "model": ("Model", "模型"),
    "server_url": ("Server URL", "服务器地址"),
    # the chat
    "title_caption": ("Answers only from the documents in **{kb}**, with citations; says so when they do not hold the answer.",
                      "只根据 **{kb}** 中的文档回答，并给出出处；文档中没有答案时会直接说明。"),
    "no_documents": ("This knowledge base has no documents yet: upload some in the sidebar.",
                     "这个知识库还没有文档：请在侧边栏上传。"),
    "chat_input": ("Ask a question about your documents", "就你的文档提问"),
    "loading_models": ("Loading the models (only the first question after start)…", "正在加载模型（仅启动后的第一个问题）…"),
    "waiting_ingest": ("Indexing your upload first; the question is answered as soon as it is in…",
                       "正在先为刚上传的文件建立索引，完成后立即回答…"),
    "searching": ("Searching the documents…", "正在检索文档…"),
    "searched_for": ("Searched for: {query}", "检索内容：{query}"),
    "table_query": ("Query over the table in {where}; rows {rows}", "对 {where} 中表格的查询；行 {rows}"),
    "answered_by": ("{model} · {seconds} s", "{model} · {seconds} 秒"),
    "refused_at_gate": ("refused before the chat model was asked · {seconds} s", "在调用对话模型之前即已拒答 · {seconds} 秒"),
    "refusal_plain": ("The closest passages did not say enough to answer.", "最接近的段落没有提供足够的信息来回答。"),
    "closest": ("Closest: {where}", "最接近：{where}"),
    "details": ("Details", "详细信息"),
    "confidence": ("confidence {value:.0%}", "置信度 {value:.0%}"),
    "withheld": ("Withheld draft (confidence {value:.0%}, under the threshold): judge it yourself",
                 "未采用的草稿（置信度 {value:.0%}，低于阈值）：请自行判断"),
    "error": ("Something went wrong: {error}", "出错了：{error}"),
    # feedback
    "fb_right": ("👍 Right", "👍 正确"),
    "fb_wrong": ("👎 Wrong", "👎 错误"),
    "fb_should_refuse": ("Should have refused", "应该拒答"),
    "fb_right_refusal": ("👍 Right to refuse", "👍 拒答正确"),
    "fb_in_documents": ("👎 It is in the documents", "👎 文档里有答案"),
    "fb_kept": ("Kept as a test case ({verdict}).", "已保存为测试用例（{verdict}）。"),
    # the check page
    "check_title": ("Check this knowledge base", "检查知识库"),
    "check_about": ("ragapp writes questions from your documents (a fifth of the documents hidden: their questions must be "
                    "refused), answers them, and fits the refusal threshold to this knowledge base. A chat model on a "
                    "server writes better questions than the packaged one.",
                    "ragapp 根据你的文档自动出题（隐藏五分之一的文档：关于它们的问题应当拒答），再逐一回答，并为这个知识库"
                    "校准拒答阈值。服务器上的对话模型出的题比内置的小模型更好。"),
    "check_questions": ("Questions to write", "出题数量"),
    "check_estimate": ("About {minutes} on this machine ({seconds:.1f} s a question{measured}).",
                       "在本机上大约需要 {minutes}（每题约 {seconds:.1f} 秒{measured}）。"),
    "check_measured": (", as the last check took", "，按上次检查的用时"),
    "check_run": ("Run the check", "开始检查"),
    "check_cancel": ("Stop the check", "停止检查"),
    "check_running": ("{stage}: {done} of {total} · about {left} left", "{stage}：{done}/{total} · 约剩 {left}"),
    "check_starting": ("Starting… (waiting for the worker)", "正在开始…（等待后台任务）"),
    "check_failed": ("The check failed: {error}", "检查失败：{error}"),
    "check_never": ("This knowledge base has not been checked yet.", "这个知识库还没有检查过。"),
    "minutes": ("{n} min", "{n} 分钟"),
    "seconds": ("{n} s", "{n} 秒"),
    "check_counts": ("{answerable} answerable and {probes} must-refuse questions{writer}",
                     "{answerable} 个可回答问题，{probes} 个应拒答问题{writer}"),
    "check_written_by": (", written by {writer}", "，由 {writer} 出题"),
    "check_too_small": ("Too few questions to fit a threshold: {why}", "问题太少，无法校准阈值：{why}"),
    "check_in_force": ("{which}: the threshold in force is {value} ({origin}); {fitted}",
                       "{which}：当前阈值 {value}（{origin}）；{fitted}"),
    "check_fitted": ("fitted on this knowledge base: {value}", "按本知识库校准：{value}"),
    "check_not_fitted": ("none fitted on this knowledge base", "未能按本知识库校准"),
    "check_apply": ("Apply this threshold", "采用这个阈值"),
    "check_wrong": ("What went wrong ({n} of {total})", "出错的问题（{total} 个中有 {n} 个）"),
    "wrong_answered": ("answered, should have refused", "回答了，但应拒答"),
    "wrong_refused": ("refused", "拒答了"),
    "wrong_answer": ("wrong answer", "答错了"),
    "expected": ("Expected: {answer} — from {source}", "正确答案：{answer} — 出自 {source}"),
    "col_group": ("questions", "问题"),
    "col_threshold": ("threshold", "阈值"),
    "fig_hit@1": ("right passage first", "首个段落正确"),
    "fig_hit@5": ("right passage in the top 5", "前 5 个段落含正确段落"),
    "fig_accuracy": ("answers right", "回答正确率"),
    "fig_token_f1": ("words shared with the right answer", "与正确答案的词重合"),
    "fig_false_refusals": ("refused though answerable", "可回答却拒答"),
    "fig_probe_refusals": ("refused when it should", "应拒答且已拒答"),
    "fig_citations_right": ("cites the right place", "出处正确"),
    "fig_median_ms": ("median time (ms)", "中位用时（毫秒）"),
    "threshold_global": ("global ({value})", "通用（{value}）"),
    "threshold_fitted": ("fitted ({value})", "校准（{value}）"),
    "threshold_in force": ("in force ({value})", "当前（{value}）"),
    "citation_page": ("[{n}] the quote boxed on its page", "[{n}] 引文在原页面上的位置"),
    "citation_page_plain": ("[{n}] the page", "[{n}] 原页面"),
    "open_file": ("Open the file (page {page})", "打开文件（第 {page} 页）"),
    "the_file": ("The file: {path} (page {page})", "文件：{path}（第 {page} 页）"),
    "page_missing": ("The page cannot be shown: {why}", "无法显示该页：{why}"),
    "cite_rows": ("rows {rows}", "行 {rows}"),
    "cite_span": ("characters {start}–{end} · score {score}", "字符 {start}–{end} · 分数 {score}"),
    "model_help": ("A packaged name — qwen2.5-coder-0.5b-instruct (faster) or qwen2.5-coder-1.5b-instruct (right more often, "
                   "slower) — or a .gguf file (in-process), or the server's model name (openai)",
                   "内置模型名——qwen2.5-coder-0.5b-instruct（更快）或 qwen2.5-coder-1.5b-instruct（更常答对，较慢）——"
                   "或 .gguf 文件（本进程内运行），或服务器上的模型名（openai）"),
    "key_paired": ("API key: from {env} (paired with this URL in the config)", "API 密钥：来自 {env}（配置中与此地址配对）"),
    "key_none": ("No API key is sent: only a server URL paired with a key variable in the config gets one.",
                 "不发送 API 密钥：只有配置中与密钥变量配对的服务器地址才会收到密钥。"),
    "password": ("Password", "密码"),
    "user_name": ("User name", "用户名"),
    "sign_in": ("Sign in", "登录"),
    "wrong_sign_in": ("Wrong user name or password.", "用户名或密码错误。"),
    "too_many_attempts": ("Too many failed sign-ins; try again in {seconds} s.", "登录失败次数过多，请 {seconds} 秒后再试。"),
    "signed_in_as": ("Signed in as {name}", "已登录：{name}"),
    "sign_out": ("Sign out", "退出登录"),
    "not_a_user": ("{name} (named by the sign-on proxy) is not a ragapp user; ask an admin to add you.",
                   "{name}（由单点登录代理提供）不是 ragapp 用户，请联系管理员添加。"),
    "conversations": ("Conversations", "对话记录"),
    "new_conversation": ("New conversation", "新对话"),
    "no_kb_for_you": ("No knowledge base is shared with you yet; ask an admin.", "还没有与你共享的知识库，请联系管理员。"),
    "wrong_password": ("Wrong password.", "密码错误。"),
}


def language() -> str:
    """The page's language: the one chosen in the sidebar, else the browser's ("zh" for any Chinese)."""
    chosen = st.session_state.get("ui_language")
    if chosen in LANGUAGES:
        return chosen
    locale = (getattr(st.context, "locale", None) or "").lower()
    return "zh" if locale.startswith("zh") else "en"


def t(key: str, lang: str | None = None, **values: object) -> str:
    """The words for `key` in `lang` (the page's language by default), with `values` filled in."""
    en, zh = WORDS[key]
    text = zh if (lang or language()) == "zh" else en
    return text.format(**values) if values else text
