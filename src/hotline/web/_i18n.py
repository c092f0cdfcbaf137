"""The console's own words in English and Russian (message texts come from hotline.compose).

One table, key -> (English, Russian); a test checks that every key used by a template is here
and that both languages are filled in. Use the project's words (DESIGN.md "Words").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

LANGS: Final = ("en", "ru")

UI: Final[dict[str, tuple[str, str]]] = {
    # Frame and navigation.
    "app_title": ("hotline — duty officer's console", "hotline — консоль дежурного"),
    "nav_links": ("Links", "Линии связи"),
    "nav_inbox": ("Inbox", "Входящие"),
    "nav_compose": ("Compose", "Новое сообщение"),
    "nav_outbox": ("Outbox", "Исходящие"),
    "nav_releases": ("Release queue", "Очередь выпуска"),
    "nav_map": ("Map", "Карта"),
    "nav_cases": ("Cases", "Дела"),
    "nav_audit": ("Audit", "Аудит"),
    "node": ("Node", "Узел"),
    "signed_in_as": ("Signed in as", "Вход выполнен:"),
    "role": ("role", "роль"),
    "logout": ("Log out", "Выйти"),
    "language": ("Language", "Язык"),
    "switch_lang": ("Русский", "English"),
    "live_on": ("live", "в реальном времени"),
    "live_off": ("live updates lost — reconnecting", "обновления прервались — переподключение"),
    "role_operator": ("operator", "оператор"),
    "role_releaser": ("releaser", "выпускающий"),
    "role_auditor": ("auditor", "аудитор"),
    "role_admin": ("admin", "администратор"),
    # Login.
    "login_title": ("Log in", "Вход"),
    "username": ("Name", "Имя"),
    "password": ("Password", "Пароль"),
    "totp": ("One-time code", "Одноразовый код"),
    "login_button": ("Log in", "Войти"),
    "logged_out": ("You are logged out.", "Вы вышли из системы."),
    # Errors.
    "error_title": ("The console refused this", "Консоль отклонила действие"),
    "error_code": ("Code", "Код"),
    "back": ("Back", "Назад"),
    # Links.
    "links_title": ("Links", "Линии связи"),
    "peer": ("Peer", "Узел-партнёр"),
    "transport": ("Transport", "Канал"),
    "active": ("In use", "Используется"),
    "state": ("State", "Состояние"),
    "last_heartbeat": ("Last heartbeat", "Последний контрольный сигнал"),
    "rtt": ("Round trip", "Время отклика"),
    "failures": ("Failures", "Сбои"),
    "last_error": ("Last error", "Последняя ошибка"),
    "tree_head": (
        "Their last tree head proved consistent",
        "Их последняя вершина дерева с доказанной согласованностью",
    ),
    "our_log_witnessed": (
        "Our log, last cosigned by a witness",
        "Наш журнал, последняя заверенная свидетелем вершина",
    ),
    "size": ("size", "размер"),
    "alarm": ("alarm", "тревога"),
    "not_yet": ("not yet", "пока нет"),
    "no_peers": ("No peers yet.", "Узлов-партнёров пока нет."),
    "link_up": ("up", "работает"),
    "link_degraded": ("degraded", "с перебоями"),
    "link_down": ("down", "не работает"),
    "link_unknown": ("unknown", "неизвестно"),
    "alarms_title": ("Security alarms", "Тревоги безопасности"),
    "alarm_banner": (
        "Security alarm: see the events below",
        "Тревога безопасности: см. события ниже",
    ),
    "security_events": ("Recent security events", "Последние события безопасности"),
    "equivocation_alarm": (
        "a peer showed two different histories (equivocation)",
        "узел-партнёр показал две разные истории (раздвоение)",
    ),
    "no_security_events": ("No security events.", "Событий безопасности нет."),
    "time": ("Time", "Время"),
    "code": ("Code", "Код"),
    "detail": ("Detail", "Подробности"),
    "source": ("Source", "Источник"),
    "recovered_title": (
        "Recovered after a restore (verified evidence)",
        "Восстановлено после восстановления хранилища (проверенные свидетельства)",
    ),
    "recovered_note": (
        "Messages of the link this node's restored store had lost, fetched back from the peer: "
        "each signed by its author and proved in the peer's log. Not in our transcript, which "
        "stays on hold.",
        "Сообщения линии, утраченные восстановленным хранилищем узла и полученные обратно от "
        "узла-партнёра: каждое подписано автором и доказано в журнале партнёра. В наш журнал "
        "не внесены; он остаётся приостановленным.",
    ),
    "recovered_verified": ("verified: leaf {leaf} of {size}", "проверено: лист {leaf} из {size}"),
    "recovered_key_suspect": (
        "signed by a key revoked as compromised: may be a forgery",
        "подписано ключом, отозванным как скомпрометированный: возможна подделка",
    ),
    # Messages.
    "inbox_title": ("Inbox", "Входящие"),
    "awaiting_ack": ("Awaiting acknowledgement", "Ожидают подтверждения"),
    "recently_acked": ("Recently acknowledged", "Недавно подтверждённые"),
    "nothing_waiting": ("Nothing is waiting.", "Ничего не ожидает."),
    "showing_most_urgent": ("Showing the most urgent:", "Показаны самые срочные:"),
    "priority": ("Priority", "Приоритет"),
    "type": ("Type", "Тип"),
    "from": ("From", "От"),
    "to": ("To", "Кому"),
    "received": ("Received", "Получено"),
    "created": ("Created", "Создано"),
    "deadline": ("Acknowledge by", "Подтвердить до"),
    "left": ("Time left", "Осталось"),
    "overdue": ("overdue", "просрочено"),
    "summary": ("Summary", "Кратко"),
    "open": ("Open", "Открыть"),
    "message": ("Message", "Сообщение"),
    "message_id": ("Message id", "Идентификатор сообщения"),
    "original": ("Original (as signed by the sender)", "Оригинал (как подписал отправитель)"),
    "rendered_in": ("Shown in", "Показано на языке"),
    "acknowledge": ("Acknowledge", "Подтвердить"),
    "ack_note": (
        "Your name, the language and a hash of the text above are signed into the receipt.",
        "Ваше имя, язык и хеш показанного текста подписываются в квитанции.",
    ),
    "acknowledged_by": ("Acknowledged by", "Подтвердил"),
    "reply": ("Reply", "Ответить"),
    "translations": ("Translations attached", "Приложенные переводы"),
    "translation_note": (
        "Signed by this node for the operator who made it and kept in its transcript; never "
        "sent, never in place of the signed original.",
        "Подписаны этим узлом от имени оператора и записаны в его журнал; не отправляются и "
        "не заменяют подписанный оригинал.",
    ),
    "attach_translation": ("Attach a translation", "Приложить перевод"),
    "translation_lang": ("Language of the translation", "Язык перевода"),
    "by": ("by", "—"),
    "in_reply_to": ("In reply to", "В ответ на"),
    "outbox_title": ("Outbox", "Исходящие"),
    "history": ("States, with times", "Состояния и время"),
    "nothing_sent": ("Nothing sent yet.", "Пока ничего не отправлено."),
    "recipient": ("Recipient", "Получатель"),
    "priority_flash": ("FLASH", "МОЛНИЯ"),
    "priority_immediate": ("IMMEDIATE", "НЕМЕДЛЕННО"),
    "priority_priority": ("PRIORITY", "СРОЧНО"),
    "priority_routine": ("ROUTINE", "ОБЫЧНО"),
    "state_queued": ("queued", "в очереди"),
    "state_sent": ("sent", "отправлено"),
    "state_delivered": ("delivered", "доставлено"),
    "state_acknowledged": ("acknowledged", "подтверждено"),
    "state_answered": ("answered", "получен ответ"),
    "state_expired": ("expired", "истёк срок"),
    # Release queue.
    "releases_title": ("Release queue", "Очередь выпуска"),
    "releases_note": (
        "FLASH messages are sent only when a second person (a releaser) approves them.",
        "Сообщения «МОЛНИЯ» отправляются только после одобрения вторым лицом (выпускающим).",
    ),
    "waiting_release": ("Waiting for release", "Ожидают выпуска"),
    "nothing_to_release": ("Nothing is waiting for release.", "Нет сообщений, ожидающих выпуска."),
    "author": ("Author", "Автор"),
    "approve": ("Approve and send", "Одобрить и отправить"),
    "reject": ("Reject", "Отклонить"),
    "reason": ("Reason", "Причина"),
    "own_message": (
        "Your message: a second person must release it.",
        "Ваше сообщение: его должно выпустить другое лицо.",
    ),
    "decided": ("Decided", "Решения"),
    "decided_by": ("Decided by", "Решение принял"),
    "outcome": ("Outcome", "Итог"),
    "release_pending": ("pending", "ожидает"),
    "release_releasing": ("being sent", "отправляется"),
    "release_released": ("released", "выпущено"),
    "release_rejected": ("rejected", "отклонено"),
    "messages_sent": ("Messages", "Сообщения"),
    # Map.
    "map_title": ("Map: activities and conflicts", "Карта: мероприятия и конфликты"),
    "map_note": (
        "Own volumes in blue, peers' in orange, conflicts in red. "
        "Offline world map (Natural Earth).",
        "Свои объёмы — синим, объёмы партнёров — оранжевым, конфликты — красным. "
        "Автономная карта мира (Natural Earth).",
    ),
    "map_time": ("Time (UTC)", "Время (UTC)"),
    "all_times": ("all times", "всё время"),
    "volumes": ("volumes", "объёмов"),
    "conflicts": ("Conflicts", "Конфликты"),
    "no_conflicts": ("No conflicts.", "Конфликтов нет."),
    "own_volume": ("Our volume", "Наш объём"),
    "peer_volume": ("Their volume", "Их объём"),
    "window": ("Window", "Время"),
    "altitudes": ("Altitudes", "Высоты"),
    "area": ("Area", "Площадь"),
    "notifications": ("Notifications", "Уведомления"),
    "ours": ("ours", "наше"),
    "theirs": ("theirs", "их"),
    "draft_response": ("Draft a response", "Подготовить ответ"),
    "refused_notifications": (
        "notifications could not be read and are not shown",
        "уведомлений не удалось прочитать; они не показаны",
    ),
    # Cases.
    "cases_title": ("Cyber referrals: cases", "Киберобращения: дела"),
    "no_cases": ("No cases yet.", "Дел пока нет."),
    "case": ("Case", "Дело"),
    "direction": ("Direction", "Направление"),
    "dir_out": ("we referred", "наше обращение"),
    "dir_in": ("referred to us", "обращение к нам"),
    "opened": ("Opened", "Открыто"),
    "respond_by": ("Respond by", "Ответить до"),
    "tlp": ("TLP", "TLP"),
    "requested": ("Requested", "Запрошено"),
    "accountability": ("Accountability per month", "Подотчётность по месяцам"),
    "case_referred": ("referred", "направлено"),
    "case_acknowledged": ("acknowledged", "подтверждено"),
    "case_investigating": ("investigating", "расследуется"),
    "case_action_taken": ("action taken", "приняты меры"),
    "case_declined": ("declined", "отклонено"),
    "case_closed": ("closed", "закрыто"),
    "month": ("Month", "Месяц"),
    "referrals": ("Referrals", "Обращений"),
    "acked_in_time": ("acknowledged in time", "подтверждено в срок"),
    "action_taken": ("action taken", "приняты меры"),
    "declined": ("declined", "отклонено"),
    "sent_side": ("sent", "отправленные"),
    "received_side": ("received", "полученные"),
    "ack_median": ("median hours to acknowledgement", "медиана часов до подтверждения"),
    # Audit.
    "audit_title": ("Audit", "Аудит"),
    "our_log": ("Our transcript", "Наш журнал (транскрипт)"),
    "root": ("root", "корень"),
    "signed_head": ("Latest signed tree head", "Последняя подписанная вершина дерева"),
    "peer_logs": ("Peers' logs", "Журналы партнёров"),
    "last_consistent": ("Last head proved consistent", "Последняя согласованная вершина"),
    "recent_heads": ("Heads received", "Полученные вершины"),
    "checked_state": ("Check", "Проверка"),
    "kind": ("Kind", "Вид"),
    "cosignatures_title": ("Witness cosignatures of our log", "Подписи свидетелей нашего журнала"),
    "witness": ("Witness", "Свидетель"),
    "no_cosignatures": ("No cosignatures yet.", "Подписей свидетелей пока нет."),
    "export_bundle": ("Export an audit bundle", "Выгрузить пакет аудита"),
    "export": ("Export", "Выгрузить"),
    "export_note": (
        "A signed file with both logs' heads, proofs and every statement of the link; "
        "check it anywhere with: hotline audit verify FILE",
        "Подписанный файл с вершинами и доказательствами обоих журналов и всеми записями линии; "
        "проверка где угодно: hotline audit verify ФАЙЛ",
    ),
    "action_log": ("Operators' actions", "Действия операторов"),
    "operator": ("Operator", "Оператор"),
    "action": ("Action", "Действие"),
    "target": ("Object", "Объект"),
    # Compose.
    "compose_title": ("Compose", "Новое сообщение"),
    "message_type": ("Message type", "Тип сообщения"),
    "recipients": ("Recipients", "Получатели"),
    "choose": ("Choose", "Выбрать"),
    "preview": ("Preview", "Предварительный просмотр"),
    "preview_en": ("English", "Английский"),
    "preview_ru": ("Russian", "Русский"),
    "fix_fields": ("Fix the marked fields.", "Исправьте отмеченные поля."),
    "valid": ("Valid: ready to send.", "Сообщение корректно и готово к отправке."),
    "send": ("Send", "Отправить"),
    "flash_goes_to_release": (
        "A FLASH message goes to the release queue: a second person must release it.",
        "Сообщение «МОЛНИЯ» попадает в очередь выпуска: его должно выпустить второе лицо.",
    ),
    "sent_ok": ("Queued for sending:", "Поставлено в очередь на отправку:"),
    "json_hint": (
        "JSON, as in the schema (docs/schemas)",
        "JSON, как в схеме (docs/schemas)",
    ),
    "list_hint": ("One per line", "По одному в строке"),
    "optional": ("optional", "необязательно"),
    "need_recipient": ("Choose at least one recipient.", "Выберите хотя бы одного получателя."),
    "yes": ("yes", "да"),
    "no": ("no", "нет"),
}


#: Compose form labels by field name (the schemas' titles are English only).
FIELDS: Final[dict[str, tuple[str, str]]] = {
    "text": ("Text", "Текст"),
    "lang": ("Language of the text (en, ru, ...)", "Язык текста (en, ru, ...)"),
    "kind": ("Kind of activity", "Вид деятельности"),
    "volumes": (
        "Volumes (4D: footprint, altitudes, time window)",
        "Объёмы (4D: район, высоты, время)",
    ),
    "units": ("Units (one per line)", "Подразделения (по одному в строке)"),
    "contact": ("Contact", "Контакт"),
    "remarks": ("Remarks", "Примечания"),
    "name": ("Name", "Название"),
    "exercise_type": ("Type of exercise", "Тип учений"),
    "purpose": ("Purpose", "Цель"),
    "start_date": ("Start date", "Дата начала"),
    "end_date": ("End date", "Дата окончания"),
    "area": ("Area", "Район"),
    "troops": ("Troops", "Численность войск"),
    "battle_tanks": ("Battle tanks", "Боевые танки"),
    "armoured_combat_vehicles": ("Armoured combat vehicles", "Боевые бронированные машины"),
    "artillery_pieces": ("Artillery pieces", "Артиллерийские системы"),
    "combat_aircraft_sorties": ("Combat aircraft sorties", "Самолёто-вылеты боевой авиации"),
    "helicopters": ("Helicopters", "Вертолёты"),
    "observers_invited": ("Observers invited", "Наблюдатели приглашены"),
    "occurred_at": ("Occurred at (UTC)", "Время происшествия (UTC)"),
    "position": ("Position [longitude, latitude]", "Координаты [долгота, широта]"),
    "domain": ("Domain", "Среда"),
    "units_involved": ("Units involved (one per line)", "Участники (по одному в строке)"),
    "narrative": ("Narrative", "Описание"),
    "severity": ("Severity", "Серьёзность"),
    "subject": ("Subject", "Тема"),
    "questions": ("Questions (one per line)", "Вопросы (по одному в строке)"),
    "in_reply_to": ("In reply to (message id)", "В ответ на (идентификатор сообщения)"),
    "action_taken": ("Action taken", "Принятые меры"),
    "stix_bundle": ("STIX 2.1 bundle", "Пакет STIX 2.1"),
    "requested_actions": ("Requested actions", "Запрашиваемые действия"),
    "response_deadline": ("Respond by (UTC)", "Ответить до (UTC)"),
    "tlp": ("TLP marking", "Метка TLP"),
    "case_id": ("Case id", "Идентификатор дела"),
    "state": ("New state", "Новое состояние"),
    "note": ("Note", "Заметка"),
    "reason": ("Reason", "Причина"),
}


def field_label(lang: str) -> Callable[[str, str], str]:
    """``label(name, title)`` for compose forms: the field's label in ``lang``, else ``title``."""
    index = 1 if lang == "ru" else 0

    def label(name: str, title: str) -> str:
        pair = FIELDS.get(name)
        return title if pair is None else pair[index]

    return label


def translate(lang: str) -> Callable[[str], str]:
    """``t(key)`` for templates: the text of ``key`` in ``lang`` (English for unknown langs)."""
    index = 1 if lang == "ru" else 0

    def t(key: str) -> str:
        pair = UI.get(key)
        return key if pair is None else pair[index]

    return t


__all__ = ["FIELDS", "LANGS", "UI", "field_label", "translate"]
