"""The main window: navigation by role, sign-in, About."""

from __future__ import annotations

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from inspector import __version__
from inspector.errors import InspectorError
from demo import ATTRIBUTION
from ui.session import OPERATOR, Session

PAGE_TITLES = {"operator": "Operator", "teach": "Teach", "review": "Review", "settings": "Settings"}


class SignInDialog(QDialog):
    """Name and PIN; the session checks them against the database."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("Sign in")
        self.name_edit = QLineEdit()
        self.pin_edit = QLineEdit()
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #c62828")
        self.error_label.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._on_ok_clicked)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        users = [n for n, role in session.db.list_users() if role != OPERATOR]
        hint = ("technicians and quality engineers sign in here" if users else
                "no technician or quality user yet: create one with\n  inspector users add NAME --role technician")
        form.addRow(QLabel(hint))
        form.addRow("Name", self.name_edit)
        form.addRow("PIN", self.pin_edit)
        form.addRow(self.error_label)
        form.addRow(buttons)

    def _on_ok_clicked(self) -> None:
        try:
            self.session.sign_in(self.name_edit.text().strip(), self.pin_edit.text())
        except InspectorError as exc:
            self.error_label.setText(str(exc))
            self.pin_edit.clear()
            return
        self.accept()


def about_text() -> str:
    return (
        f"<h3>inspector {__version__}</h3><p>Inline visual inspection with EfficientAD.</p>"
        f"<p><b>Demo data</b><br>{ATTRIBUTION}</p>"
    )


class MainWindow(QMainWindow):
    """Pages are created by the application and handed in; which are shown depends on the role."""

    def __init__(self, session: Session, pages: dict[str, QWidget], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.pages = pages
        self.setWindowTitle("inspector")
        self.nav = QListWidget()
        self.nav.setFixedWidth(130)
        self.nav.setStyleSheet("QListWidget { font-size: 14pt; } QListWidget::item { padding: 10px; }")
        self.stack = QStackedWidget()
        for page in pages.values():
            self.stack.addWidget(page)
        self.user_label = QLabel()
        self.sign_in_button = QPushButton("Sign in …")
        self.sign_in_button.clicked.connect(self._on_sign_in_clicked)
        self.about_button = QPushButton("About")
        self.about_button.clicked.connect(self.show_about)

        top = QHBoxLayout()
        top.addWidget(self.user_label, 1)
        top.addWidget(self.sign_in_button)
        top.addWidget(self.about_button)
        body = QHBoxLayout()
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top)
        layout.addLayout(body, 1)
        self.setCentralWidget(central)
        self._names: list[str] = []
        self._current = "operator"
        self.nav.currentRowChanged.connect(self._on_nav_changed)
        session.user_changed.connect(self._on_user_changed)
        self._on_user_changed(session.user, session.role)

    def show_page(self, name: str) -> None:
        """Shows a page the signed-in role may see (others are not in the navigation)."""
        if name not in self._names:
            raise InspectorError(f"the {PAGE_TITLES[name]} page is not open to the {self.session.role} role")
        self.nav.setCurrentRow(self._names.index(name))

    def current_page(self) -> str:
        return self._current

    def _on_nav_changed(self, row: int) -> None:
        if 0 <= row < len(self._names):
            self._current = self._names[row]
            self.stack.setCurrentWidget(self.pages[self._current])

    def _on_user_changed(self, user: str, role: str) -> None:
        # Stay on the page shown if the new role may see it, else go to the operator page.
        self._names = list(self.session.pages())
        self.nav.blockSignals(True)
        self.nav.clear()
        for name in self._names:
            self.nav.addItem(PAGE_TITLES[name])
        self.nav.blockSignals(False)
        self.user_label.setText(f"<b>{user}</b> ({role})")
        self.sign_in_button.setText("Sign in …" if role == OPERATOR else "Sign out")
        self.nav.setCurrentRow(self._names.index(self._current) if self._current in self._names else 0)
        self._on_nav_changed(self.nav.currentRow())

    def _on_sign_in_clicked(self) -> None:
        if self.session.role != OPERATOR:
            self.session.sign_out()
            return
        SignInDialog(self.session, self).exec()

    def show_about(self) -> None:
        box = QMessageBox(self)
        box.setWindowTitle("About inspector")
        box.setTextFormat(Qt.TextFormat.RichText)
        box.setText(about_text())
        box.exec()
